"""Feature extraction: the backbone is frozen, only the task head trains.

Features come the way the checkpoint was trained to make them: a sentence-transformers checkpoint
(the embedded MiniLM) pools its tokens (its ``1_Pooling`` config: mean, CLS or max), and a
scikit-learn logistic regression and a small MLP are fitted on those cached features (no encoder
epochs) and the better on validation is kept (docs/defaults.md: neither wins everywhere). A plain transformers checkpoint keeps the architecture's own head on ``[CLS]``
(pooler + classifier), whose pooler the checkpoint trained, and the run is a standard Hugging Face
model. ``pooling`` and ``head`` choose explicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from thawkit.errors import ConfigError
from thawkit.models.layout import HEAD, BlockLayout, find_layer_list, keep_layers
from thawkit.strategies.base import Strategy, StrategyConfig, TrainablePlan, blocks_plan, register_strategy

if TYPE_CHECKING:
    from torch import nn


class FrozenConfig(StrategyConfig):
    pooling: Literal["auto", "cls", "mean", "max"] = Field(
        default="auto", description="features: auto (the checkpoint's own pooling, else [CLS]), cls, mean or max",
        json_schema_extra={"flag": "--pooling"},
    )
    head: Literal["auto", "linear", "mlp", "logreg"] = Field(
        default="auto",
        description="auto (logreg on pooled features; the model's own head on [CLS]), linear, mlp or scikit-learn logreg",
        json_schema_extra={"flag": "--head"},
    )
    mlp_hidden: int = Field(default=256, gt=0, description="hidden units of the mlp head", json_schema_extra={"flag": "--mlp-hidden"})
    feature_layer: int | None = Field(
        default=None,
        description="encoder layer whose output feeds the head (1: the lowest, -1: the top; the layers above it are "
        "dropped); default: the measured value for the task (NER and QA on small encoders: -3), else the top",
        json_schema_extra={"flag": "--feature-layer"},
    )

    @field_validator("feature_layer")
    @classmethod
    def _layer_not_zero(cls, value: int | None) -> int | None:
        if value == 0:
            raise ValueError("layers count from 1 (the lowest) or from -1 (the top); fix: e.g. --feature-layer -3")
        return value


def resolve_features(pooling: str, head: str, checkpoint_mode: str | None, multi_label: bool) -> tuple[str, str]:
    """(pooling, head) for ``auto`` settings: where the checkpoint defines a pooling, its pooled
    features with the better of logistic regression and an MLP on validation (``select``); the
    architecture's own [CLS] head otherwise; multi-label (no logistic regression) takes a linear head."""
    if pooling == "auto":
        pooling = checkpoint_mode or "cls"
    if head == "auto":
        own_head = pooling == "cls" and checkpoint_mode is None
        head = "linear" if own_head or multi_label else "select"
    return pooling, head


@register_strategy("frozen")
class FrozenBackbone(Strategy):
    """Only the head trains (or is fitted) on frozen features; a head alone takes a much higher LR."""

    Config = FrozenConfig
    default_lr = 1e-3
    sane_max_lr = 5e-2
    epoch_cost = 0.0
    trainable_share = 0.01
    color = "#1f77b4"
    order = 0
    cached_pass = True  # the frozen bottom runs once, from the cache

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        cfg: Any = self.config
        self.resolved = {"pooling": cfg.pooling, "head": cfg.head}
        self.trains_nothing = False  # set for a language model (zero-shot)

    @property
    def uses_pooled_head(self) -> bool:  # type: ignore[override]
        """Explicitly asked for a pooled-feature head (``auto`` adapts to the task instead)."""
        cfg: Any = self.config
        return cfg.pooling not in ("auto", "cls") or cfg.head not in ("auto", "linear")

    @property
    def fits_head_in_closed_form(self) -> bool:  # type: ignore[override]
        return bool(self.feature_head_candidates)

    @property
    def feature_head_candidates(self) -> tuple[str, ...]:
        """Heads fitted on cached pooled features (the best on validation is kept); () when trained."""
        head = self.resolved["head"]
        return {"logreg": ("logreg",), "select": ("logreg", "mlp")}.get(head, ())

    def resolved_options(self) -> dict[str, Any]:
        return dict(self.resolved)

    def resolve_for(self, model_name: str, multi_label: bool) -> None:
        """``auto`` pooling and head from the checkpoint's own pooling and the data (multi-label: no logreg)."""
        from thawkit.models.backbone import checkpoint_pooling

        cfg: Any = self.config
        checkpoint = checkpoint_pooling(model_name)
        pooling, head = resolve_features(cfg.pooling, cfg.head, checkpoint.mode if checkpoint else None, multi_label)
        self.resolved = {"pooling": pooling, "head": head, "checkpoint_pooling": checkpoint.mode if checkpoint else None}

    def load_model(self, name: str, num_labels: int, id2label: dict[int, str], problem_type: str) -> nn.Module | None:
        """A pooled-feature classifier, or None for the architecture's own head (the default Auto model)."""
        cfg: Any = self.config
        self.resolve_for(name, problem_type == "multi_label_classification")
        pooling, head = self.resolved["pooling"], self.resolved["head"]
        if pooling == "cls" and head == "linear":  # the architecture's own pooler + classifier
            return None
        from thawkit.models.pooled import load_pooled_classifier

        built_head = "linear" if head == "select" else head  # replaced by the head that wins on validation
        return load_pooled_classifier(name, num_labels, id2label, problem_type, pooling, built_head, cfg.mlp_hidden, 0.1)

    def prepare(self, model: nn.Module, peft_task_type: str | None = None) -> nn.Module:
        """Drop the layers above ``feature_layer``: the head reads that layer's output, and the saved model is
        a standard one of that depth (smaller and faster to serve). A language model's head is pretrained:
        frozen trains nothing, and the run is the untrained model, a zero-shot baseline."""
        cfg: Any = self.config
        if peft_task_type == "CAUSAL_LM":
            if cfg.feature_layer is not None:
                raise ConfigError("--feature-layer feeds a task head; a language model writes from its top layer; fix: drop it")
            self.trains_nothing = True
            self.resolved.update(zero_shot=True)
            return model
        if cfg.feature_layer is None:
            return model
        total = len(find_layer_list(model)[1])
        layer = cfg.feature_layer if cfg.feature_layer > 0 else total + 1 + cfg.feature_layer
        if "feature_layer" in self.measured_options:  # measured on a 6-layer encoder; a shallower one keeps one
            layer = min(max(layer, 1), total)
        if not 1 <= layer <= total:
            raise ConfigError(f"--feature-layer {cfg.feature_layer}: the model has {total} encoder layers; "
                              f"fix: 1 to {total}, or -1 to -{total} counting from the top")
        keep_layers(model, list(range(layer)))
        self.resolved.update(feature_layer=layer, encoder_layers=total)
        return model

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        return blocks_plan(layout, [] if self.trains_nothing else [HEAD])
