"""Partial freezing: embeddings and the first k encoder layers frozen, the rest trains."""

from __future__ import annotations

from pydantic import Field

from thawkit.errors import ConfigError
from thawkit.models.layout import EMBEDDINGS, BlockLayout, layer_block
from thawkit.strategies.base import Strategy, StrategyConfig, TrainablePlan, blocks_plan, register_strategy


class PartialConfig(StrategyConfig):
    freeze_layers: int | None = Field(
        default=None, ge=0, description="encoder layers frozen from the bottom (default: half of them)",
        json_schema_extra={"flag": "--freeze-layers"},
    )


@register_strategy("partial")
class PartialFreezing(Strategy):
    """Lower layers hold general features worth keeping; the top adapts to the task."""

    Config = PartialConfig
    default_lr = 5e-5
    sane_max_lr = 2e-4
    epoch_cost = 0.4
    trainable_share = 0.5
    color = "#2ca02c"
    order = 1
    cached_pass = True  # the frozen bottom runs once, from the cache

    def frozen_layer_count(self, layout: BlockLayout) -> int:
        k = self.config.freeze_layers  # type: ignore[attr-defined]
        if k is None:
            return layout.num_layers // 2
        if k > layout.num_layers:
            raise ConfigError(
                f"--freeze-layers {k} exceeds the model's {layout.num_layers} encoder layers; "
                f"fix: pass a value from 0 to {layout.num_layers}"
            )
        return k

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        k = self.frozen_layer_count(layout)
        frozen = {EMBEDDINGS, *(layer_block(i) for i in range(k))}
        return blocks_plan(layout, [b for b in layout.blocks if b not in frozen])
