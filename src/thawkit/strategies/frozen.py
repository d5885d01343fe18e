"""Feature extraction: the backbone is frozen, only the task head trains.

By default the architecture's own head trains on ``[CLS]`` (pooler + classifier), and the run is a
standard Hugging Face model. ``pooling: mean`` and ``head: mlp | logreg`` put a thawkit head on the
pooled last layer instead (``logreg`` is fitted by scikit-learn on the cached features, no epochs).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import nn

from thawkit.models.layout import HEAD, BlockLayout
from thawkit.strategies.base import StaticStrategyMixin, StrategyConfig, TrainablePlan, blocks_plan, register_strategy


class FrozenConfig(StrategyConfig):
    pooling: Literal["cls", "mean"] = Field(default="cls", description="features: first token or mean of tokens",
                                                 json_schema_extra={"flag": "--pooling"})
    head: Literal["linear", "mlp", "logreg"] = Field(
        default="linear", description="linear (the model's own head with cls), mlp, or scikit-learn logreg",
        json_schema_extra={"flag": "--head"},
    )
    mlp_hidden: int = Field(default=256, gt=0, description="hidden units of the mlp head", json_schema_extra={"flag": "--mlp-hidden"})


@register_strategy("frozen")
class FrozenBackbone(StaticStrategyMixin):
    """Only the head (pooler and classifier) trains; a head alone takes a much higher LR."""

    Config = FrozenConfig
    default_lr = 1e-3
    sane_max_lr = 5e-2
    epoch_cost = 0.0
    trainable_share = 0.01
    color = "#1f77b4"
    order = 0
    cached_pass = True  # the frozen bottom runs once, from the cache

    @property
    def uses_pooled_head(self) -> bool:  # type: ignore[override]
        return self.config.pooling != "cls" or self.config.head != "linear"  # type: ignore[attr-defined]

    @property
    def fits_head_in_closed_form(self) -> bool:  # type: ignore[override]
        return self.config.head == "logreg"  # type: ignore[attr-defined]

    def load_model(self, name: str, num_labels: int, id2label: dict[int, str], problem_type: str) -> nn.Module | None:
        """A pooled-feature classifier when asked for one; None: the default Auto model."""
        if not self.uses_pooled_head:
            return None
        from thawkit.models.pooled import load_pooled_classifier

        cfg: Any = self.config
        return load_pooled_classifier(name, num_labels, id2label, problem_type, cfg.pooling, cfg.head, cfg.mlp_hidden, 0.1)

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        return blocks_plan(layout, [HEAD])
