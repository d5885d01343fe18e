"""Long texts as overlapping windows (``--long-text window``): the fast tokenizer's overflowing
tokens (``stride`` = the overlap) cut a text into windows of ``--max-length`` tokens; each window
trains with its text's label; a text's logits pool its windows' (the mean, or the largest per class).

Both poolings commute with dividing every logit by one temperature, so a calibrated run's windows
pool to calibrated text scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thawkit.errors import ConfigError


def window_tokens(tokenizer: Any, texts: list[str], max_length: int, overlap: int) -> tuple[dict[str, list[Any]], list[int]]:
    """(token columns with one row per window, the text each window comes from); a text shorter than
    ``max_length`` is one window."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("--long-text window needs a fast tokenizer (overflowing tokens); fix: use a model that ships "
                          "tokenizer.json, or --long-text truncate")
    encoded = tokenizer(texts, truncation=True, max_length=max_length, stride=overlap, return_overflowing_tokens=True)
    mapping = [int(i) for i in encoded.pop("overflow_to_sample_mapping")]
    return {key: list(values) for key, values in encoded.items()}, mapping


def pool_windows(logits: np.ndarray, mapping: list[int] | np.ndarray, num_texts: int, pooling: str) -> np.ndarray:
    """(windows, labels) -> (texts, labels): each text's windows pooled."""
    mapping = np.asarray(mapping)
    pooled = np.zeros((num_texts, logits.shape[-1]), dtype=np.float64)
    for text in range(num_texts):
        rows = logits[mapping == text]
        pooled[text] = rows.max(axis=0) if pooling == "max" else rows.mean(axis=0)
    return pooled.astype(np.float32)


def text_labels(labels: np.ndarray, mapping: list[int] | np.ndarray, num_texts: int) -> np.ndarray:
    """Each text's label: its first window's (every window carries it)."""
    mapping = np.asarray(mapping)
    first = np.array([int(np.flatnonzero(mapping == text)[0]) for text in range(num_texts)])
    return np.asarray(labels)[first]


def check_window_settings(max_length: int, overlap: int, has_pairs: bool) -> None:
    if has_pairs:
        raise ConfigError("--long-text window is for single texts; this data has text pairs; fix: --long-text truncate")
    if overlap * 2 >= max_length:
        raise ConfigError(f"--window-overlap {overlap} is half of --max-length {max_length} or more: windows would barely move; "
                          f"fix: an overlap under {max_length // 2}")


__all__ = ["check_window_settings", "pool_windows", "text_labels", "window_tokens"]
