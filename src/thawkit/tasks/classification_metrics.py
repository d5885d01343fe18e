"""Classification metrics (scikit-learn): scalars for the Trainer's log, full detail for metrics.json."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
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
    result.update(calibration_metrics(logits, gold, multi_label))
    result["num_examples"] = int(len(gold))
    return result


RELIABILITY_BINS = 15  # equal-width confidence bins, as Guo et al. (2017) measure ECE


def probabilities(logits: np.ndarray, multi_label: bool, temperature: float = 1.0) -> np.ndarray:
    """(n, labels): softmax over classes, or each label's sigmoid, of ``logits / temperature``."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    if multi_label:
        return 1.0 / (1.0 + np.exp(-scaled))
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _confidence_and_correct(probs: np.ndarray, gold: np.ndarray, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """Single-label: the top class's probability and whether it is right. Multi-label: every
    (example, label) decision, its confidence max(p, 1 - p) and whether it is right."""
    if multi_label:
        flat, truth = probs.ravel(), gold.ravel()
        return np.maximum(flat, 1.0 - flat), ((flat >= 0.5).astype(int) == truth)
    return probs.max(axis=-1), probs.argmax(axis=-1) == gold


def calibration_metrics(logits: np.ndarray, gold: np.ndarray, multi_label: bool, temperature: float = 1.0) -> dict[str, Any]:
    """``ece`` (expected calibration error over 15 confidence bins), ``brier`` (scikit-learn's
    Brier score; multi-label: the mean over labels) and the ``reliability`` bins behind the ECE
    (mean confidence, accuracy and count per non-empty bin) of ``softmax(logits / temperature)``."""
    if len(gold) == 0:
        return {}
    probs = probabilities(logits, multi_label, temperature)
    confidence, correct = _confidence_and_correct(probs, gold, multi_label)
    edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, RELIABILITY_BINS - 1)
    bins, ece = [], 0.0
    for b in range(RELIABILITY_BINS):
        inside = which == b
        if inside.any():
            mean_conf, accuracy = float(confidence[inside].mean()), float(correct[inside].mean())
            ece += inside.sum() / len(confidence) * abs(accuracy - mean_conf)
            bins.append({"low": round(float(edges[b]), 4), "high": round(float(edges[b + 1]), 4),
                         "confidence": round(mean_conf, 4), "accuracy": round(accuracy, 4), "count": int(inside.sum())})
    if multi_label:
        brier = float(np.mean([brier_score_loss(gold[:, i], probs[:, i], labels=[0, 1]) for i in range(probs.shape[1])]))
    else:
        brier = float(brier_score_loss(gold, probs, labels=list(range(probs.shape[1]))))
    return {"ece": float(ece), "brier": brier, "reliability": bins}


MIN_SLICE = 10  # a slice smaller than this is reported but never named the worst (too few examples to tell)


def split_slices(frame: Any, logits: np.ndarray, gold: np.ndarray, multi_label: bool) -> dict[str, Any]:
    """``{"slices": {column: slice_metrics}}`` for the split's --slice-col columns (none: {})."""
    from thawkit.data.slices import SLICE_PREFIX

    columns = [c for c in frame.columns if c.startswith(SLICE_PREFIX)]
    if not columns:
        return {}
    return {"slices": {c.removeprefix(SLICE_PREFIX): slice_metrics(logits, gold, multi_label, frame[c].tolist()) for c in columns}}


def slice_metrics(logits: np.ndarray, labels: np.ndarray, multi_label: bool, values: list[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 per value of one slice column; the worst slice (lowest accuracy among
    slices of at least ``MIN_SLICE`` examples) and its gap to the whole split."""
    values_array = np.asarray(values, dtype=object)
    overall = float(accuracy_score(labels.astype(int), predictions_from_logits(logits, multi_label)))
    per_value = {}
    for value in sorted(set(values), key=lambda v: (-int((values_array == v).sum()), v)):
        inside = values_array == value
        scores = scalar_metrics(logits[inside], labels[inside], multi_label)
        per_value[value] = {"examples": int(inside.sum()), "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}
    ranked = [v for v in per_value if per_value[v]["examples"] >= MIN_SLICE]
    worst = min(ranked, key=lambda v: per_value[v]["accuracy"]) if ranked else None
    return {
        "values": per_value, "accuracy": overall, "worst": worst,
        "worst_accuracy": per_value[worst]["accuracy"] if worst is not None else None,
        "gap": overall - per_value[worst]["accuracy"] if worst is not None else None,
        "ranked_by": f"accuracy, slices of {MIN_SLICE}+ examples",
    }
