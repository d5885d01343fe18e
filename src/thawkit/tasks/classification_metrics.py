"""Classification metrics (scikit-learn): scalars for the Trainer's log, full detail for metrics.json."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)


def predictions_from_logits(logits: np.ndarray, multi_label: bool, threshold: float = 0.5) -> np.ndarray:
    """Single-label: class ids (n,). Multi-label: 0/1 indicator matrix (n, num_labels)."""
    if multi_label:
        return (1.0 / (1.0 + np.exp(-logits)) >= threshold).astype(int)
    return logits.argmax(axis=-1)


def scalar_metrics(logits: np.ndarray, labels: np.ndarray, multi_label: bool) -> dict[str, float]:
    preds = predictions_from_logits(logits, multi_label)
    gold = labels.astype(int)
    scores = {
        # Multi-label accuracy is exact-match (subset) accuracy.
        "accuracy": float(accuracy_score(gold, preds)),
        "macro_f1": float(f1_score(gold, preds, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(gold, preds, average="weighted", zero_division=0)),
    }
    if multi_label:
        scores["micro_f1"] = float(f1_score(gold, preds, average="micro", zero_division=0))
    return scores


def detailed_metrics(
    logits: np.ndarray, labels: np.ndarray, label_names: list[str], multi_label: bool
) -> dict[str, Any]:
    """Scalars plus per-class precision/recall/F1/support and the confusion matrix."""
    preds = predictions_from_logits(logits, multi_label)
    gold = labels.astype(int)
    result: dict[str, Any] = scalar_metrics(logits, labels, multi_label)
    ids = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, preds, labels=None if multi_label else ids, zero_division=0
    )
    result["per_class"] = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }
    if multi_label:
        per_label = multilabel_confusion_matrix(gold, preds)
        result["confusion_matrix"] = {
            "format": "per label [[tn, fp], [fn, tp]]",
            "labels": label_names,
            "matrix": per_label.tolist(),
        }
    else:
        result["confusion_matrix"] = {
            "format": "rows = gold, columns = predicted",
            "labels": label_names,
            "matrix": confusion_matrix(gold, preds, labels=ids).tolist(),
        }
    result["num_examples"] = int(len(gold))
    return result
