"""Full fine-tuning: every parameter trains at the base learning rate."""

from __future__ import annotations

from thawkit.models.layout import BlockLayout
from thawkit.registry import register_strategy
from thawkit.strategies.base import StaticStrategyMixin, StrategyConfig, TrainablePlan, blocks_plan


class FullConfig(StrategyConfig):
    pass


@register_strategy("full")
class FullFineTuning(StaticStrategyMixin):
    """Everything trains. Best with a few thousand examples or more; the most memory and time."""

    Config = FullConfig
    default_lr = 3e-5

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        return blocks_plan(layout, layout.blocks)
