"""Heads fitted on frozen pooled features held in memory (no epochs of encoder passes): scikit-learn
logistic regression, or, for ``head: auto``, the better of logistic regression and an MLP on the
validation metric (docs/defaults.md: neither wins everywhere)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from thawkit.engine.core.callbacks import HistoryCallback
from thawkit.engine.core.stages import StageController
from thawkit.models.pooled import PooledHeadClassifier, build_head, fit_logistic_regression, pool, train_mlp_head


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
        features.append(pool(states, batch["attention_mask"], model.pooling).float().cpu())
        labels.append(gold.cpu())
    return torch.cat(features), torch.cat(labels)


def fit_feature_head(trainer: Any, controller: StageController, history: HistoryCallback, seed: int,
                     candidates: tuple[str, ...], metric: str) -> float:
    """Fit each candidate head on the training features, keep the best on validation, evaluate once
    and record that evaluation like an epoch's. Returns the training loss of the kept head."""
    from transformers import EvalPrediction

    controller.enter(0, 0)  # frozen backbone, and the cached path at its boundary
    model = trainer.model
    features, labels = pooled_features(trainer, model, trainer.train_dataset)
    val_features, val_labels = pooled_features(trainer, model, trainer.eval_dataset)

    def score(logits: torch.Tensor) -> float:
        prediction = EvalPrediction(predictions=logits.float().cpu().numpy(), label_ids=val_labels.numpy())
        value = trainer.compute_metrics(prediction)[metric]
        return -value if metric == "loss" else value

    scores, heads = {}, {}
    for kind in candidates:
        if kind == "logreg":
            model.head = build_head("linear", features.shape[1], model.num_labels, model.mlp_hidden, model.dropout)
            model.head_kind = "logreg"
            fit_logistic_regression(model, features, labels, seed)
        else:
            train_mlp_head(model, features, labels, val_features, score, seed)
        model.head.eval()
        with torch.inference_mode():
            scores[kind] = score(model.head(val_features))
        heads[kind] = (model.head, model.head_kind)
    chosen = max(candidates, key=lambda kind: scores[kind])  # ties: the first (simplest) candidate
    model.head, model.head_kind = heads[chosen]
    model.head_selection = {"chosen": chosen, "validation": {k: round(v, 6) for k, v in scores.items()}}
    with torch.inference_mode():
        logits = model.head(features.to(trainer.args.device)).float().cpu()
    loss = float(torch.nn.functional.cross_entropy(logits, labels.long()))
    history.on_train_begin(trainer.args, trainer.state, trainer.control)
    trainer.state.epoch = 1.0
    trainer.state.log_history.append({"loss": loss, "epoch": 1.0, "step": 0})
    trainer.evaluate()
    history.on_train_end(trainer.args, trainer.state, trainer.control)
    return float(np.round(loss, 6))
