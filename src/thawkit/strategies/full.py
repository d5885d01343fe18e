"""Full fine-tuning: every parameter trains at the base learning rate."""

from __future__ import annotations

from thawkit.models.layout import BlockLayout
from thawkit.strategies.base import Strategy, StrategyConfig, TrainablePlan, blocks_plan, register_strategy


class FullConfig(StrategyConfig):
    pass


@register_strategy("full")
class FullFineTuning(Strategy):
    """Everything trains. Best with a few thousand examples or more; the most memory and time."""

    Config = FullConfig
    default_lr = 3e-5
    sane_max_lr = 1e-4
    epoch_cost = 1.0
    trainable_share = 1.0
    color = "#d62728"
    order = 5
    trains_all_activations = True
    small_model_lr = 1e-4  # SST-2 2k, MiniLM-L6: 1e-5 0.792, 3e-5 0.823, 1e-4 0.837 (docs/defaults.md)

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        return blocks_plan(layout, layout.blocks)
