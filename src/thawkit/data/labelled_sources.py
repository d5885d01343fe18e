"""Labelled files read for ``thawkit update``: a run's training sources rebuilt exactly (the same
validation rows its seeded split held out) and new files that may bring a single, new class; their
labels are encoded over the update's label list afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from thawkit.data.classification import describe_row, encode_ids, prepare_split, sort_labels, split_validation
from thawkit.data.tables import TableFormat
from thawkit.errors import DataError


@dataclass
class LabelledSource:
    """One labelled file read for ``thawkit update``: its training rows and its validation rows
    (the file given, or the seeded split a run made of it: the same rows, since the split encodes
    labels in the file's own order as training did), each with ``label_names`` to be encoded over
    the update's label list (``encode_labels``)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    validation_source: str

    @property
    def label_names(self) -> set[str]:
        return {name for frame in (self.train, self.validation) for names in frame["label_names"] for name in names}


def read_labelled_source(
    data: str | Path,
    validation: str | Path | None,
    *,
    val_fraction: float,
    seed: int,
    text_col: str | None,
    text_pair_col: str | None,
    label_col: str | None,
    multi_label: bool,
    label_sep: str = ",",
    fmt: TableFormat | None = None,
    slice_cols: list[str] | tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
) -> LabelledSource:
    """A training file (one class is enough: new data may bring a single new class) and its
    validation rows. ``rename``: label values to names (a run trained with --label-names)."""
    path = Path(data)
    train, text_col, text_pair_col, label_col, multi_label = prepare_split(
        path, text_col, text_pair_col, label_col, multi_label, label_sep, fmt, slice_cols)
    train = encode_ids(train, {name: i for i, name in enumerate(sort_labels({n for names in train["label_names"] for n in names}))},
                    multi_label)
    if validation is not None:
        held_out, *_ = prepare_split(Path(validation), text_col, text_pair_col, label_col, multi_label, label_sep, fmt, slice_cols)
        source = str(validation)
    else:
        train, held_out, how = split_validation(train, val_fraction, seed, multi_label)
        source = f"{how} {val_fraction:.0%} split of {path} (seed {seed})"
    return LabelledSource(_renamed(train.drop(columns=["labels"]), rename), _renamed(held_out.drop(columns=["labels"], errors="ignore"),
                                                                                  rename), source)


def _renamed(frame: pd.DataFrame, rename: dict[str, str] | None) -> pd.DataFrame:
    """``label_names`` with label values renamed (a run trained with --label-names: 0/1 -> its names)."""
    frame["label_names"] = [[(rename or {}).get(name, name) for name in names] for names in frame["label_names"]]
    return frame


def read_labelled_table(path: str | Path, *, text_col: str | None, text_pair_col: str | None, label_col: str | None,
                        multi_label: bool, label_sep: str = ",", fmt: TableFormat | None = None,
                        slice_cols: list[str] | tuple[str, ...] = (), rename: dict[str, str] | None = None) -> pd.DataFrame:
    """A labelled file's rows with ``label_names`` (not yet encoded)."""
    frame, *_ = prepare_split(Path(path), text_col, text_pair_col, label_col, multi_label, label_sep, fmt, slice_cols)
    return _renamed(frame, rename)


def encode_labels(frame: pd.DataFrame, labels: list[str], multi_label: bool, path: str | Path | None = None) -> pd.DataFrame:
    """``frame`` with ``labels`` ids over ``labels``; a name outside them is a one-line error naming ``path``'s row."""
    known = set(labels)
    for index, names in enumerate(frame["label_names"]):
        unseen = [name for name in names if name not in known]
        if unseen:
            where = describe_row(Path(path), index) if path is not None else f"row {index}"
            raise DataError(f"{path}: label {unseen[0]!r} at {where} is in no training data of the update ({', '.join(labels)}); "
                            "fix: add training examples of it to --data, or drop those rows")
    return encode_ids(frame, {name: i for i, name in enumerate(labels)}, multi_label)


__all__ = ["LabelledSource", "encode_labels", "read_labelled_source", "read_labelled_table"]
