"""Discriminative / layer-wise learning-rate decay (Howard & Ruder 2018; Sun et al. 2019).

The top encoder layer trains at the base LR, each layer below at ``decay`` times the one above,
embeddings below the bottom layer; the head at the base LR times ``--head-lr-mult`` (every strategy's
head multiplier). With ``gradual: true`` the trainable set follows gradual unfreezing (spread over the
run, as in ``gradual``) while the LRs decay.
"""

from __future__ import annotations

from pydantic import Field

from thawkit.models.layout import EMBEDDINGS, HEAD, BlockLayout, layer_block
from thawkit.strategies.base import Strategy, TrainablePlan, blocks_plan, register_strategy
from thawkit.strategies.gradual import GradualConfig, SpreadStages, gradual_blocks


class LLRDConfig(GradualConfig):
    decay: float = Field(default=0.9, gt=0, le=1, description="LR factor per layer going down",
                         json_schema_extra={"flag": "--layer-decay"})
    gradual: bool = Field(default=False, description="also unfreeze gradually from the top")


def layer_lr_scales(layout: BlockLayout, decay: float) -> dict[str, float]:
    top = layout.num_layers - 1
    scales = {layer_block(i): decay ** (top - i) for i in range(layout.num_layers)}
    scales[EMBEDDINGS] = decay ** layout.num_layers
    scales[HEAD] = 1.0
    return scales


@register_strategy("llrd")
class LayerwiseLRDecay(SpreadStages, Strategy):
    """Lower layers change less: they hold general features that transfer."""

    Config = LLRDConfig
    default_lr = 5e-5
    sane_max_lr = 2e-4
    epoch_cost = 1.0
    trainable_share = 1.0
    color = "#9467bd"
    order = 3
    trains_all_activations = True

    def num_stages(self, layout: BlockLayout) -> int:
        return layout.num_layers + 2 if self.config.gradual else 1  # type: ignore[attr-defined]

    @property
    def stage_every_steps(self) -> int | None:
        return SpreadStages.stage_every_steps.fget(self) if self.config.gradual else None  # type: ignore[attr-defined]

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        cfg = self.config
        blocks = gradual_blocks(layout, stage) if cfg.gradual else layout.blocks  # type: ignore[attr-defined]
        return blocks_plan(layout, blocks, layer_lr_scales(layout, cfg.decay))  # type: ignore[attr-defined]
