"""Heads fitted on frozen pooled features held in memory (no epochs of encoder passes): scikit-learn
logistic regression, or, for ``head: auto``, the better of logistic regression and an MLP on the
validation metric (docs/defaults.md: neither wins everywhere)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import torch

from thawkit.engine.core.callbacks import HistoryCallback
from thawkit.engine.core.stages import StageController
from thawkit.models.pooled import PooledHeadClassifier, build_head, fit_logistic_regression, head_loss, train_mlp_head
from thawkit.strategies.base import ContrastivePhase


@torch.inference_mode()
def pooled_features(trainer: Any, model: PooledHeadClassifier, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled last-layer features of every example (from the cache when the cached path is on)."""
    loader = trainer.get_eval_dataloader(dataset)
    features, labels = [], []
    model.eval()
    for batch in loader:
        batch = trainer.batch_inputs(batch)  # cached states at the current boundary, on the device
        gold = batch.pop("labels")
        states = model.backbone(**batch).last_hidden_state
        features.append(model.features(states, batch["attention_mask"]).float().cpu())
        labels.append(gold.cpu())
    return torch.cat(features), torch.cat(labels)


def _loggers(trainer: Any, event: str) -> None:
    """No ``Trainer.train`` runs a closed-form fit: the reporting integrations' start and end of
    training (TensorBoard opens its folder in the run and flushes its events, MLflow starts and ends
    its run) are called here."""
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__module__.startswith("transformers.integrations"):
            getattr(callback, event)(trainer.args, trainer.state, trainer.control, model=trainer.model)


class FeatureHeadFit:
    """The closed-form fit of a pooled classifier: each candidate head on the training features, the
    best on validation kept, evaluated once and recorded like an epoch. With a contrastive ``body``
    phase (few-shot) the encoder trains first and the heads fit its features; ``refit_on_every_example``
    then trains the final model again, from the pretrained body, on training and validation examples
    together (once validation has been scored): with a handful of labels, none is left out of the model."""

    def __init__(self, trainer: Any, controller: StageController, history: HistoryCallback, seed: int,
                 candidates: tuple[str, ...], metric: str, body: ContrastivePhase | None = None, progress: bool = False) -> None:
        self.trainer, self.controller, self.history, self.progress = trainer, controller, history, progress
        self.seed, self.candidates, self.metric, self.body = seed, candidates, metric, body
        self.pretrained: dict[str, torch.Tensor] | None = None  # the body before contrastive training

    def fit(self) -> float:
        """Returns the training loss of the kept head."""
        from transformers import EvalPrediction

        trainer, controller, seed = self.trainer, self.controller, self.seed
        model = trainer.model
        # As Trainer.train orders them: the loggers start, then the learning curve's clock, with the fit
        # (the run's training time covers the fit too).
        _loggers(trainer, "on_train_begin")
        self.history.on_train_begin(trainer.args, trainer.state, trainer.control)
        if self.body is not None:
            from thawkit.engine.core.contrastive import train_body

            with controller.full_structure():
                self.pretrained = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
            model.body_training = train_body(trainer, controller, self.body, seed, self.progress)
            with controller.full_structure():
                mix_back(model.backbone, self.pretrained, self.body.keep_pretrained)
        controller.enter(0, 0)  # frozen backbone (or the trained body), and the cached path at its boundary
        features, labels = pooled_features(trainer, model, trainer.train_dataset)
        val_features, val_labels = pooled_features(trainer, model, trainer.eval_dataset)

        def score(logits: torch.Tensor) -> float:
            prediction = EvalPrediction(predictions=logits.float().cpu().numpy(), label_ids=val_labels.numpy())
            value = trainer.compute_metrics(prediction)[self.metric]
            return -value if self.metric == "loss" else value

        scores, heads = {}, {}
        for kind in self.candidates:
            if kind == "logreg":
                _fit_logreg_head(model, features, labels, seed)
            else:
                train_mlp_head(model, features, labels, val_features, score, seed)
            model.head.eval()
            with torch.inference_mode():
                scores[kind] = score(model.head(val_features))
            heads[kind] = (model.head, model.head_kind)
        chosen = max(self.candidates, key=lambda kind: scores[kind])  # ties: the first (simplest) candidate
        model.head, model.head_kind = heads[chosen]
        model.head_selection = {"chosen": chosen, "validation": {k: round(v, 6) for k, v in scores.items()}}
        with torch.inference_mode():
            logits = model.head(features.to(trainer.args.device)).float().cpu()
        loss = float(head_loss(logits, labels))
        trainer.state.epoch = 1.0
        # Through the Trainer's log, so --report-to loggers (TensorBoard, MLflow) get the fit too.
        trainer.log({"loss": loss, **{f"head_{kind}_validation_{self.metric}": round(-value if self.metric == "loss" else value, 6)
                                       for kind, value in scores.items()}})
        trainer.evaluate()
        self.history.on_train_end(trainer.args, trainer.state, trainer.control)
        _loggers(trainer, "on_train_end")
        return float(np.round(loss, 6))

    def refit_on_every_example(self) -> dict[str, Any] | None:
        """The final model trained again on training + validation examples (the validation metrics
        stay those of the model that did not see them); None where it does not apply (no contrastive
        body, or an MLP head, whose epochs are chosen on validation)."""
        trainer, controller, model = self.trainer, self.controller, self.trainer.model
        if self.pretrained is None or model.head_kind != "logreg":
            return None
        from thawkit.engine.cache.cached_training import CACHE_KEYS
        from thawkit.engine.core.contrastive import train_body

        # The whole model on tokens (the run loop has restored it; the cache stops following stages).
        controller.listeners.clear()
        controller.full_structure = contextlib.nullcontext
        model.backbone.load_state_dict(self.pretrained)
        rows = [{k: v for k, v in split[i].items() if k not in CACHE_KEYS}
                for split in (trainer.train_dataset, trainer.eval_dataset) for i in range(len(split))]
        kept, trainer.train_dataset = trainer.train_dataset, rows
        started = time.perf_counter()
        try:
            body = train_body(trainer, controller, self.body, self.seed, self.progress)
            mix_back(model.backbone, self.pretrained, self.body.keep_pretrained)
            controller.enter(0, 0)
            features, labels = pooled_features(trainer, model, rows)
            _fit_logreg_head(model, features, labels, self.seed)
        finally:
            trainer.train_dataset = kept
        model.eval()
        return {"examples": len(rows), "body_training": body, "seconds": round(time.perf_counter() - started, 3),
                "note": "the saved model: body and head trained again on the training and validation examples together; "
                        "validation metrics are those of the model trained without them"}


@torch.no_grad()
def mix_back(backbone: torch.nn.Module, pretrained: dict[str, torch.Tensor], share: float) -> None:
    """Weight-space ensembling (WiSE-FT, Wortsman et al. 2022): each weight moves ``share`` of the way
    back to its pretrained value."""
    if share <= 0:
        return
    for name, value in backbone.state_dict().items():
        if value.is_floating_point():
            value.mul_(1 - share).add_(pretrained[name].to(value.device), alpha=share)


def _fit_logreg_head(model: PooledHeadClassifier, features: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
    model.head = build_head("linear", features.shape[1], model.num_labels, model.mlp_hidden, model.dropout)
    model.head_kind = "logreg"
    fit_logistic_regression(model, features, labels, seed)
