"""A data profile: size, class balance, text lengths against the max length, duplicates, leakage."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from thawkit.tasks.roles.advice import AdviceInput


@dataclass
class DataProfile:
    num_train: int
    num_validation: int
    num_classes: int
    class_counts: dict[str, int]
    imbalance_ratio: float  # largest class / smallest class
    token_length: dict[str, float]  # p50, p90, p99, max (tokens, with special tokens)
    max_length: int
    truncated_share: float  # share of training texts longer than max_length
    duplicates: int  # training texts that occur more than once (extra copies)
    conflicting_duplicates: int  # duplicated texts with different labels
    leaked: int  # validation texts that also occur in training
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_profile(inputs: AdviceInput, num_train: int, num_validation: int, labels: list[str],
                  class_counts: dict[str, int] | None, tokenizer: Any, max_length: int, truncation_fix: str | None = None) -> DataProfile:
    """The profile of a task's training data (``Task.advice_input``): size, labels, lengths against
    ``max_length``; where each example is one labelled text, duplicates, conflicting labels and
    validation texts leaked from training too (0 otherwise)."""
    texts, pairs = inputs.texts, inputs.pairs
    sample = min(len(texts), 5000)  # lengths from a sample: enough for percentiles, fast on big sets
    encoded = tokenizer(texts[:sample], pairs[:sample] if pairs else None, truncation=False)["input_ids"] if sample else []
    lengths = np.array([len(ids) for ids in encoded]) if sample else np.zeros(1)
    counts = dict(class_counts or {})
    nonzero = [c for c in counts.values() if c > 0]
    duplicates = conflicting = leaked = 0
    if inputs.label_names is not None:
        seen: dict[str, set[str]] = {}
        for text, names in zip(texts, inputs.label_names):
            seen.setdefault(text, set()).update(names)
        duplicates = len(texts) - len(seen)
        text_counts = Counter(texts)
        conflicting = sum(1 for text, names in seen.items() if len(names) > 1 and text_counts[text] > 1)
        leaked = sum(1 for text in inputs.validation_texts if text in seen)
    profile = DataProfile(
        num_train=num_train, num_validation=num_validation, num_classes=len(labels), class_counts=counts,
        imbalance_ratio=float(max(nonzero) / min(nonzero)) if nonzero else 1.0,
        token_length={"p50": float(np.percentile(lengths, 50)), "p90": float(np.percentile(lengths, 90)),
                      "p99": float(np.percentile(lengths, 99)), "max": float(lengths.max())},
        max_length=max_length, truncated_share=float((lengths > max_length).mean()),
        duplicates=int(duplicates), conflicting_duplicates=int(conflicting), leaked=int(leaked),
    )
    if profile.imbalance_ratio >= 10:
        profile.notes.append(
            f"severe class imbalance ({profile.imbalance_ratio:.0f}:1): use --class-weights auto and select on macro-F1"
        )
    if profile.truncated_share > 0.05:
        profile.notes.append(f"{profile.truncated_share:.0%} of inputs exceed --max-length {max_length} tokens and will be "
                             f"truncated; p99 is {profile.token_length['p99']:.0f}" + (f"; {truncation_fix}" if truncation_fix else ""))
    if profile.leaked:
        profile.notes.append(f"{profile.leaked} validation texts also occur in training: validation scores will be optimistic")
    if profile.conflicting_duplicates:
        profile.notes.append(f"{profile.conflicting_duplicates} texts occur with different labels: check the labeling")
    return profile
