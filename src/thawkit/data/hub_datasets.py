"""Datasets from the Hugging Face Hub as data files: ``--data hf:NAME[:SPLIT]`` (or
``hf:NAME:CONFIG:SPLIT``), read with ``datasets.load_dataset``. Offline (``HF_HUB_OFFLINE=1``) it
reads the local datasets cache, where any earlier online load left the dataset.

Class-label columns (``ClassLabel``, and lists of them) read as their names, as a file would hold
them: a model trained on ``hf:stanfordnlp/sst2`` says ``positive``, not ``1``.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from thawkit.errors import DataError

PREFIX = "hf:"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
FORMS = "hf:NAME (its train split), hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT, e.g. hf:stanfordnlp/sst2:validation"


def is_hub_reference(path: Any) -> bool:
    return str(path).startswith(PREFIX)


def parse_reference(reference: str) -> tuple[str, str | None, str]:
    """(name, config, split) of ``hf:NAME[:CONFIG]:SPLIT``; a malformed one is a one-line error."""
    parts = reference[len(PREFIX):].split(":")
    if len(parts) > 3 or not all(parts):
        raise DataError(f"{reference}: not a Hub dataset reference; fix: {FORMS}")
    name, config, split = (parts[0], None, "train") if len(parts) == 1 else (parts[0], None, parts[1]) if len(parts) == 2 \
        else (parts[0], parts[1], parts[2])
    if not _NAME.fullmatch(name):
        raise DataError(f"{reference}: {name!r} is not a Hub dataset id; fix: {FORMS}")
    return name, config, split


def named_labels(dataset: Any) -> pd.DataFrame:
    """The dataset as a table, class-label ids replaced by their names (-1, "no label", by None)."""
    from datasets import ClassLabel

    frame = dataset.to_pandas()
    for column, feature in dataset.features.items():
        inner = getattr(feature, "feature", None)
        if isinstance(feature, ClassLabel):
            frame[column] = [feature.int2str(int(v)) if v is not None and int(v) >= 0 else None for v in frame[column]]
        elif isinstance(inner, ClassLabel):
            frame[column] = [[inner.int2str(int(v)) for v in values] if values is not None else None for values in frame[column]]
    return frame


def read_hub_dataset(reference: str) -> pd.DataFrame:
    import datasets
    from datasets.utils import logging as datasets_logging

    name, config, split = parse_reference(reference)
    datasets_logging.set_verbosity_error()
    datasets_logging.disable_progress_bar()
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except ValueError as exc:  # an unknown split or config: datasets names the ones there are
        first = " ".join(str(exc).split())[:300]
        raise DataError(f"{reference}: {first}; fix: {FORMS}") from None
    except (ConnectionError, FileNotFoundError, OSError) as exc:
        offline = datasets.config.HF_HUB_OFFLINE
        where = "is not in the local datasets cache and HF_HUB_OFFLINE is set" if offline else "was not found on the Hub"
        fix = "load it once online (any thawkit command with this --data does), or pass a local file" if offline else \
            "check the dataset id (and HF_TOKEN for a private or gated one)"
        raise DataError(f"{reference}: the dataset {name!r} {where} ({type(exc).__name__}); fix: {fix}") from None
    return named_labels(dataset)


__all__ = ["FORMS", "PREFIX", "is_hub_reference", "named_labels", "parse_reference", "read_hub_dataset"]
