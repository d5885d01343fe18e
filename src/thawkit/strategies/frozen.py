"""Feature extraction: the backbone is frozen, only the task head trains."""

from __future__ import annotations

from thawkit.models.layout import HEAD, BlockLayout
from thawkit.registry import register_strategy
from thawkit.strategies.base import StaticStrategyMixin, StrategyConfig, TrainablePlan, blocks_plan


class FrozenConfig(StrategyConfig):
    pass


@register_strategy("frozen")
class FrozenBackbone(StaticStrategyMixin):
    """Only the head (pooler and classifier) trains; a head alone takes a much higher LR."""

    Config = FrozenConfig
    default_lr = 1e-3

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        return blocks_plan(layout, [HEAD])
