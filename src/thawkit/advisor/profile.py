"""A data profile: size, class balance, text lengths against the max length, duplicates, leakage."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


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


def build_profile(train: Any, validation: Any, labels: list[str], tokenizer: Any, max_length: int) -> DataProfile:
    """``train``/``validation``: frames with ``text``, optional ``text_pair`` and ``label_names``."""
    counts = Counter(name for names in train["label_names"] for name in names)
    class_counts = {label: int(counts.get(label, 0)) for label in labels}
    nonzero = [c for c in class_counts.values() if c > 0]
    texts = train["text"].tolist()
    pairs = train["text_pair"].tolist() if "text_pair" in train else None
    sample = min(len(texts), 5000)  # lengths from a sample: enough for percentiles, fast on big sets
    encoded = tokenizer(texts[:sample], pairs[:sample] if pairs else None, truncation=False)["input_ids"]
    lengths = np.array([len(ids) for ids in encoded])
    seen: dict[str, set[str]] = {}
    for text, names in zip(texts, train["label_names"]):
        seen.setdefault(text, set()).update(names)
    duplicates = len(texts) - len(seen)
    text_counts = Counter(texts)
    conflicting = sum(1 for text, names in seen.items() if len(names) > 1 and text_counts[text] > 1)
    leaked = sum(1 for text in validation["text"].tolist() if text in seen)
    profile = DataProfile(
        num_train=len(train),
        num_validation=len(validation),
        num_classes=len(labels),
        class_counts=class_counts,
        imbalance_ratio=float(max(nonzero) / min(nonzero)) if nonzero else 1.0,
        token_length={
            "p50": float(np.percentile(lengths, 50)),
            "p90": float(np.percentile(lengths, 90)),
            "p99": float(np.percentile(lengths, 99)),
            "max": float(lengths.max()),
        },
        max_length=max_length,
        truncated_share=float((lengths > max_length).mean()),
        duplicates=int(duplicates),
        conflicting_duplicates=int(conflicting),
        leaked=int(leaked),
    )
    if profile.imbalance_ratio >= 10:
        profile.notes.append(
            f"severe class imbalance ({profile.imbalance_ratio:.0f}:1): use --class-weights auto and select on macro-F1"
        )
    if profile.truncated_share > 0.05:
        profile.notes.append(
            f"{profile.truncated_share:.0%} of texts exceed --max-length {max_length} tokens and will be truncated; "
            f"p99 is {profile.token_length['p99']:.0f}"
        )
    if profile.leaked:
        profile.notes.append(f"{profile.leaked} validation texts also occur in training: validation scores will be optimistic")
    if profile.conflicting_duplicates:
        profile.notes.append(f"{profile.conflicting_duplicates} texts occur with different labels: check the labeling")
    return profile


def build_text_profile(texts: list[str], num_train: int, num_validation: int, labels: list[str],
                       class_counts: dict[str, int] | None, tokenizer: Any, max_length: int) -> DataProfile:
    """The profile of a task whose examples are not one labelled text (NER sentences, QA
    question-context pairs, similarity pairs): size, labels and lengths of ``texts`` (a sample of the
    training inputs); duplicates and leakage are classification checks and stay 0 here."""
    sample = texts[:5000]
    lengths = np.array([len(ids) for ids in tokenizer(sample, truncation=False)["input_ids"]]) if sample else np.zeros(1)
    counts = dict(class_counts or {})
    nonzero = [c for c in counts.values() if c > 0]
    profile = DataProfile(
        num_train=num_train, num_validation=num_validation, num_classes=len(labels), class_counts=counts,
        imbalance_ratio=float(max(nonzero) / min(nonzero)) if nonzero else 1.0,
        token_length={"p50": float(np.percentile(lengths, 50)), "p90": float(np.percentile(lengths, 90)),
                      "p99": float(np.percentile(lengths, 99)), "max": float(lengths.max())},
        max_length=max_length, truncated_share=float((lengths > max_length).mean()),
        duplicates=0, conflicting_duplicates=0, leaked=0,
    )
    if profile.truncated_share > 0.05:
        profile.notes.append(f"{profile.truncated_share:.0%} of inputs exceed --max-length {max_length} tokens; "
                             f"p99 is {profile.token_length['p99']:.0f}")
    return profile
