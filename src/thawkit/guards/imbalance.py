"""Severe class imbalance: suggest class weights and macro-F1 for model selection."""

from __future__ import annotations

from thawkit.guards.base import Finding

SEVERE_RATIO = 10.0
SKEWED_RATIO = 3.0  # from here on, --class-weights auto (the default) weights the loss


def imbalance_ratio(class_counts: dict[str, int]) -> float:
    counts = [c for c in class_counts.values() if c > 0]
    return max(counts) / min(counts) if counts else 1.0


def weights_apply(class_counts: dict[str, int], class_weights: str) -> bool:
    """``balanced``: always; ``auto``: when the classes are skewed; ``none``: never."""
    return class_weights == "balanced" or (class_weights == "auto" and imbalance_ratio(class_counts) >= SKEWED_RATIO)


def check_imbalance(class_counts: dict[str, int], class_weights: str, metric: str) -> list[Finding]:
    ratio = imbalance_ratio(class_counts)
    if ratio < SEVERE_RATIO:
        return []
    rare = min(class_counts, key=lambda k: class_counts[k] if class_counts[k] > 0 else float("inf"))
    fixes = []
    if not weights_apply(class_counts, class_weights):
        fixes.append("pass --class-weights auto")
    if metric not in ("macro_f1",):
        fixes.append("select on --metric macro_f1")
    if not fixes:
        return []
    return [
        Finding(
            "class-imbalance",
            f"severe class imbalance: {ratio:.0f}:1 (rarest class {rare!r} has {class_counts[rare]} examples)",
            " and ".join(fixes),
        )
    ]


def balanced_class_weights(class_counts: list[int]) -> list[float]:
    """n / (classes * count_c): the scikit-learn 'balanced' weighting."""
    total = sum(class_counts)
    present = [c for c in class_counts if c > 0]
    return [total / (len(present) * c) if c > 0 else 0.0 for c in class_counts]


# Validation examples below which one predicted class is not evidence of a collapse: a fair coin-flip
# model labels all of 2 alike half the time, all of 10 alike 0.2% of the time.
MIN_COLLAPSE_EVIDENCE = 10


def check_collapse(validation: dict) -> list[Finding]:
    """A model that predicts one class for every validation example learned nothing but the prior
    (for NER: a tagger that finds no entity where the validation set has some, every token "O")."""
    if validation.get("predicted_entities") == 0 and validation.get("gold_entities", 0) > 0:
        return [Finding(
            "majority-class",
            f"the model tags every validation token 'O' and finds none of its {validation['gold_entities']} entities "
            "(entity F1 0.000): it learned the tag prior, not the task",
            "train longer or with a higher --lr (the NER defaults are measured: drop --lr to use them)",
        )]
    confusion = validation.get("confusion_matrix") or {}
    matrix, labels = confusion.get("matrix"), confusion.get("labels") or []
    if not str(confusion.get("format", "")).startswith("rows = gold") or not matrix or len(matrix) < 2:
        return []
    predicted = [sum(row[j] for row in matrix) for j in range(len(matrix))]
    present = sum(1 for row in matrix if sum(row) > 0)
    if present < 2 or sum(1 for p in predicted if p > 0) > 1:
        return []
    if sum(predicted) < MIN_COLLAPSE_EVIDENCE:  # a few-shot split: 2 of 2 alike says little about the model
        return []
    only = labels[predicted.index(max(predicted))] if labels else predicted.index(max(predicted))
    return [Finding(
        "majority-class",
        f"the model predicts {only!r} for every validation example (macro-F1 {validation.get('macro_f1', float('nan')):.3f}): "
        "it learned the class prior, not the task",
        "train longer or with a higher --lr, keep --class-weights auto, or try --strategy frozen",
    )]
