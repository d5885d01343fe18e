"""Gradual unfreezing (ULMFiT): head first, then one more encoder layer from the top per stage,
embeddings last. A stage is an epoch by default, or ``every_steps`` optimizer steps."""

from __future__ import annotations

from pydantic import Field

from thawkit.models.layout import EMBEDDINGS, HEAD, BlockLayout, layer_block
from thawkit.strategies.base import StaticStrategyMixin, StrategyConfig, TrainablePlan, blocks_plan, register_strategy


class GradualConfig(StrategyConfig):
    every_steps: int | None = Field(
        default=None, gt=0, description="unfreeze one more layer every N steps (default: every epoch)",
        json_schema_extra={"flag": "--unfreeze-every"},
    )


def gradual_blocks(layout: BlockLayout, stage: int) -> list[str]:
    """Stage 0: head; stage s: head + top s layers; stage L+1: embeddings too."""
    thawed_layers = min(stage, layout.num_layers)
    blocks = [HEAD, *(layer_block(layout.num_layers - 1 - i) for i in range(thawed_layers))]
    if stage > layout.num_layers:
        blocks.append(EMBEDDINGS)
    return blocks


@register_strategy("gradual")
class GradualUnfreezing(StaticStrategyMixin):
    """Thawing from the top limits catastrophic forgetting of the lower, more general layers."""

    Config = GradualConfig
    default_lr = 1e-4
    sane_max_lr = 5e-4
    epoch_cost = 0.45
    trainable_share = 0.6
    color = "#ff7f0e"
    order = 2
    cached_pass = True  # the frozen bottom runs once, from the cache

    def num_stages(self, layout: BlockLayout) -> int:
        return layout.num_layers + 2

    @property
    def stage_every_steps(self) -> int | None:
        return self.config.every_steps  # type: ignore[attr-defined]

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        return blocks_plan(layout, gradual_blocks(layout, stage))
