"""Slice columns (--slice-col): a value per row, kept beside a split's texts and labels, so the
metrics can be given per value (per-slice accuracy, the worst slice and its gap)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from thawkit.data.tables import is_missing, normalise_label, pick_column
from thawkit.errors import DataError

SLICE_PREFIX = "slice:"  # a split's column holding a --slice-col value per row
MAX_SLICE_VALUES = 50
MISSING_SLICE = "(missing)"


def _slice_values(frame: pd.DataFrame, path: Path, column: str, label_col: str) -> list[str]:
    """One --slice-col column as strings (empty cells: "(missing)"), refused where it would not slice."""
    pick_column(frame, path, column, (), "--slice-col")
    if column == label_col:
        raise DataError(f"{path}: --slice-col {column} is the label column; fix: slice by another column "
                        "(per-class scores are in metrics.json's per_class already)")
    values = [MISSING_SLICE if is_missing(v) else normalise_label(v) for v in frame[column].tolist()]
    distinct = len(set(values))
    if distinct > MAX_SLICE_VALUES:
        raise DataError(f"{path}: --slice-col {column} has {distinct:,} distinct values, too many to report per slice "
                        f"(at most {MAX_SLICE_VALUES}); fix: slice by a grouping column (e.g. a length bucket or a source)")
    return values


def slice_columns(frame: pd.DataFrame, path: Path, columns: list[str] | tuple[str, ...], label_col: str) -> dict[str, list[str]]:
    """``{"slice:NAME": values}`` for each --slice-col column of ``frame`` (read from ``path``)."""
    return {SLICE_PREFIX + column: _slice_values(frame, path, column, label_col) for column in columns}
