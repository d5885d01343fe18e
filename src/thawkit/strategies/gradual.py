"""Gradual unfreezing (ULMFiT): head first, then one more encoder layer from the top per stage,
embeddings last.

The stages are spread over the run: with S stages and T optimizer steps, a new stage starts every
``thaw_by * T / (S - 1)`` steps, so the whole encoder trains from ``thaw_by`` of the run on, however
few the epochs (one stage per epoch left a 1-epoch run training only the head). ``every_steps``
fixes the stage length; ``per_epoch`` restores one stage per epoch."""

from __future__ import annotations

from pydantic import Field

from thawkit.models.layout import EMBEDDINGS, HEAD, BlockLayout, layer_block
from thawkit.strategies.base import Strategy, StrategyConfig, TrainablePlan, blocks_plan, register_strategy


class GradualConfig(StrategyConfig):
    every_steps: int | None = Field(
        default=None, gt=0, description="unfreeze one more layer every N steps (default: spread over the run)",
        json_schema_extra={"flag": "--unfreeze-every"},
    )
    thaw_by: float = Field(default=0.5, gt=0, le=1, description="share of training after which every layer trains",
                           json_schema_extra={"flag": "--thaw-by"})
    per_epoch: bool = Field(default=False, description="one stage per epoch instead of spreading the stages over the run",
                            json_schema_extra={"flag": "--unfreeze-per-epoch"})


class SpreadStages:
    """Stage length for gradual schedules: fixed, per epoch, or spread so all stages fit in ``thaw_by``."""

    config: StrategyConfig
    _spread_every: int | None = None

    def num_stages(self, layout: BlockLayout) -> int:
        return layout.num_layers + 2

    def plan_schedule(self, total_steps: int, layout: BlockLayout) -> None:
        cfg = self.config
        transitions = max(self.num_stages(layout) - 1, 1)
        self._spread_every = max(1, int(cfg.thaw_by * total_steps / transitions))  # type: ignore[attr-defined]

    @property
    def stage_every_steps(self) -> int | None:
        cfg = self.config
        if cfg.every_steps or cfg.per_epoch:  # type: ignore[attr-defined]
            return cfg.every_steps  # type: ignore[attr-defined]
        return self._spread_every  # None until the run's length is known: a stage per epoch


def gradual_blocks(layout: BlockLayout, stage: int) -> list[str]:
    """Stage 0: head; stage s: head + top s layers; stage L+1: embeddings too."""
    thawed_layers = min(stage, layout.num_layers)
    blocks = [HEAD, *(layer_block(layout.num_layers - 1 - i) for i in range(thawed_layers))]
    if stage > layout.num_layers:
        blocks.append(EMBEDDINGS)
    return blocks


@register_strategy("gradual")
class GradualUnfreezing(SpreadStages, Strategy):
    """Thawing from the top limits catastrophic forgetting of the lower, more general layers."""

    Config = GradualConfig
    default_lr = 1e-4
    sane_max_lr = 5e-4
    epoch_cost = 0.45
    trainable_share = 0.6
    color = "#ff7f0e"
    order = 2
    cached_pass = True  # the frozen bottom runs once, from the cache

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        return blocks_plan(layout, gradual_blocks(layout, stage))
