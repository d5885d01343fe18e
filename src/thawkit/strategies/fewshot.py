"""Few-shot classification (4-64 examples per class): contrastive training of the encoder, then a
closed-form head on its adapted, pooled embeddings.

The body learns to place examples of one class close together and examples of different classes
apart (SetFit's recipe, Tunstall et al. 2022), then a scikit-learn logistic regression is fitted on
the pooled, L2-normalised embeddings of the adapted body (the frozen strategy's head fit). Unlike
SetFit, which draws sentence pairs and encodes both sides of every pair, each step here encodes a
class-balanced batch of examples once and compares every pair in it (batch-all): a batch of 32
gives 496 pairs for 32 encoder passes, where 16 drawn pairs cost 32. ``loss``: ``cosine`` (SetFit's
cosine-similarity regression, positive and negative pairs weighted equally), ``supcon``
(supervised contrastive, Khosla et al. 2020), ``batch-hard`` (sentence-transformers'
BatchHardTripletLoss: each example against its hardest positive and hardest negative, i.e.
hard-negative mining as the encoder moves). Multi-label: two examples are a positive pair when
they share a label, and the head is one logistic regression per label.

The learning rate is the plan's ``lr`` (measured, docs/defaults.md); the contrastive phase runs
``body_epochs`` passes over the examples. Layers below ``body_layers`` (counted from the top) stay
frozen and come from the frozen-layer cache. With a handful of labels none should be left out of the
model: once the validation split taken from ``--data`` is scored, the body and head are trained
again on every labeled example (``refit``; a ``--validation`` file is never trained on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from thawkit.errors import ConfigError
from thawkit.models.layout import BlockLayout, layer_block
from thawkit.strategies.base import ContrastivePhase, Strategy, StrategyConfig, TrainablePlan, blocks_plan, register_strategy
from thawkit.strategies.frozen import resolve_features

if TYPE_CHECKING:
    from torch import nn


class FewShotConfig(StrategyConfig):
    pooling: Literal["auto", "cls", "mean", "max"] = Field(
        default="auto", description="features: auto (the checkpoint's own pooling, else [CLS]), cls, mean or max",
        json_schema_extra={"flag": "--pooling"},
    )
    head: Literal["auto", "logreg", "mlp", "select"] = Field(
        default="auto",
        description="auto (logreg), logreg, mlp, or select (the better of both on validation)",
        json_schema_extra={"flag": "--head"},
    )
    mlp_hidden: int = Field(default=256, gt=0, description="hidden units of the mlp head", json_schema_extra={"flag": "--mlp-hidden"})
    loss: Literal["cosine", "supcon", "batch-hard"] = Field(
        default="cosine", description="contrastive loss: cosine (SetFit's), supcon, or batch-hard (hard-negative triplets)",
        json_schema_extra={"flag": "--contrastive-loss"},
    )
    body_epochs: float = Field(
        default=20.0, gt=0, description="contrastive passes over the training examples (each compares it with every "
        "other example in its batch)", json_schema_extra={"flag": "--body-epochs"},
    )
    pair_batch: int = Field(
        default=32, ge=4, description="examples per contrastive batch (all pairs within it are compared)",
        json_schema_extra={"flag": "--pair-batch"},
    )
    body_layers: int | None = Field(
        default=None, ge=1, description="top encoder layers the contrastive phase trains (default: all); the rest "
        "are frozen and cached", json_schema_extra={"flag": "--body-layers"},
    )
    temperature: float = Field(default=0.1, gt=0, description="supcon temperature", json_schema_extra={"flag": "--temperature"})
    keep_pretrained: float = Field(
        default=0.0, ge=0, lt=1, description="share of the pretrained body's weights mixed back into the trained body "
        "(weight-space ensembling, WiSE-FT; 0: the trained body)", json_schema_extra={"flag": "--keep-pretrained"},
    )
    refit: bool = Field(
        default=True, description="once the validation split (taken from --data) is scored, train the saved model again on "
        "every labeled example; validation metrics stay those of the model that did not see it", json_schema_extra={"flag": "--refit"},
    )


@register_strategy("fewshot")
class FewShot(Strategy):
    """SetFit-style: contrastive body training on pairs within a class and across classes, then a
    logistic regression on the adapted embeddings. For 4-64 labeled examples per class."""

    Config = FewShotConfig
    default_lr = 2e-5
    small_model_lr = 5e-5
    sane_max_lr = 5e-4
    epoch_cost = 0.3
    trainable_share = 1.0
    color = "#17becf"
    order = 5  # trains every layer by default: beside full fine-tuning in tables and compare
    uses_pooled_head = True
    trains_all_activations = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        cfg: Any = self.config
        self.resolved: dict[str, Any] = {"pooling": cfg.pooling, "head": cfg.head}

    @property
    def fits_head_in_closed_form(self) -> bool:  # type: ignore[override]
        return True

    @property
    def refits_on_validation(self) -> bool:  # type: ignore[override]
        return bool(self.config.refit)  # type: ignore[attr-defined]

    @property
    def feature_head_candidates(self) -> tuple[str, ...]:  # type: ignore[override]
        return {"mlp": ("mlp",), "select": ("logreg", "mlp")}.get(self.resolved["head"], ("logreg",))

    def contrastive_phase(self) -> ContrastivePhase:
        cfg: Any = self.config
        return ContrastivePhase(epochs=cfg.body_epochs, batch_size=cfg.pair_batch, loss=cfg.loss, temperature=cfg.temperature,
                                keep_pretrained=cfg.keep_pretrained)

    def resolved_options(self) -> dict[str, Any]:
        return {**self.config.model_dump(), **self.resolved}

    def resolve_for(self, model_name: str, multi_label: bool) -> None:
        """The checkpoint's own pooling (normalised, as sentence-transformers embeds); logreg head."""
        from thawkit.models.backbone import checkpoint_pooling

        cfg: Any = self.config
        checkpoint = checkpoint_pooling(model_name)
        pooling, _ = resolve_features(cfg.pooling, "auto", checkpoint.mode if checkpoint else None, multi_label)
        head = "logreg" if cfg.head == "auto" else cfg.head
        self.resolved = {"pooling": pooling, "head": head, "checkpoint_pooling": checkpoint.mode if checkpoint else None}

    def load_model(self, name: str, num_labels: int, id2label: dict[int, str], problem_type: str) -> nn.Module | None:
        from thawkit.models.pooled import load_pooled_classifier

        cfg: Any = self.config
        self.resolve_for(name, problem_type == "multi_label_classification")
        return load_pooled_classifier(name, num_labels, id2label, problem_type, self.resolved["pooling"], "linear",
                                      cfg.mlp_hidden, 0.1, normalize=True)

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        """The top ``body_layers`` encoder layers (the head is fitted in closed form afterwards)."""
        k = self.config.body_layers  # type: ignore[attr-defined]
        if k is not None and k > layout.num_layers:
            raise ConfigError(f"--body-layers {k} exceeds the model's {layout.num_layers} encoder layers; "
                              f"fix: pass a value from 1 to {layout.num_layers}")
        count = layout.num_layers if k is None else k
        return blocks_plan(layout, [layer_block(i) for i in range(layout.num_layers - count, layout.num_layers)])
