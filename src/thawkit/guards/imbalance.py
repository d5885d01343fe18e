"""Severe class imbalance: suggest class weights and macro-F1 for model selection."""

from __future__ import annotations

from thawkit.guards.base import Finding

SEVERE_RATIO = 10.0


def check_imbalance(class_counts: dict[str, int], class_weights: str, metric: str) -> list[Finding]:
    counts = [c for c in class_counts.values() if c > 0]
    if not counts:
        return []
    ratio = max(counts) / min(counts)
    if ratio < SEVERE_RATIO:
        return []
    rare = min(class_counts, key=lambda k: class_counts[k] if class_counts[k] > 0 else float("inf"))
    fixes = []
    if class_weights != "auto":
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
