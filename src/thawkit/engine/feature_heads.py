"""Heads fitted in closed form on frozen features (no epochs): scikit-learn logistic regression."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from thawkit.engine.callbacks import HistoryCallback
from thawkit.engine.stages import StageController
from thawkit.models.pooled import PooledHeadClassifier, fit_logistic_regression, pool


@torch.inference_mode()
def pooled_features(trainer: Any, model: PooledHeadClassifier, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled last-layer features of every example (from the cache when the cached path is on)."""
    loader = trainer.get_eval_dataloader(dataset)
    features, labels = [], []
    model.eval()
    for batch in loader:
        batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
        gold = batch.pop("labels")
        states = model.backbone(**batch).last_hidden_state
        features.append(pool(states, batch["attention_mask"], model.pooling).float().cpu())
        labels.append(gold.cpu())
    return torch.cat(features), torch.cat(labels)


def fit_logreg_head(trainer: Any, controller: StageController, history: HistoryCallback, seed: int) -> float:
    """Fit the head, evaluate once, and record that evaluation like an epoch's."""
    controller.enter(0, 0)  # frozen backbone, and the cached path at its boundary
    model = trainer.model
    features, labels = pooled_features(trainer, model, trainer.train_dataset)
    fit_logistic_regression(model, features, labels, seed)
    with torch.inference_mode():
        logits = model.head(features.to(trainer.args.device)).float().cpu()
    loss = float(torch.nn.functional.cross_entropy(logits, labels.long()))
    history.on_train_begin(trainer.args, trainer.state, trainer.control)
    trainer.state.epoch = 1.0
    trainer.state.log_history.append({"loss": loss, "epoch": 1.0, "step": 0})
    trainer.evaluate()
    history.on_train_end(trainer.args, trainer.state, trainer.control)
    return float(np.round(loss, 6))
