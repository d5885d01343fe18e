"""Sequence-classification data: column mapping, label encoding, validation split and checks."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from thawkit.data.slices import slice_columns
from thawkit.data.tables import TableFormat, check_data_path, is_missing, normalise_label, pick_column, read_table
from thawkit.errors import DataError

log = logging.getLogger("thawkit")

TEXT_COLUMN_GUESSES = ("text", "sentence", "sentence1", "content", "review", "document", "question")
LABEL_COLUMN_GUESSES = ("label", "labels", "class", "category", "target")


@dataclass
class ClassificationData:
    """Texts and encoded labels for each split; ``labels`` lists label names in id order."""

    labels: list[str]
    multi_label: bool
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None = None
    text_col: str = "text"
    text_pair_col: str | None = None
    label_col: str = "label"
    validation_source: str = "split"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))


def describe_row(path: Path, index: int) -> str:
    row = index + 1
    if path.suffix.lower() in {".csv", ".tsv", ".tab", ".txt"}:
        return f"row {row} (line {row + 1})"
    if path.suffix.lower() in {".jsonl", ".json"}:
        return f"row {row}"
    return f"row {row}"


def describe_rows(path: Path, indices: list[int]) -> str:
    shown = ", ".join(describe_row(path, i) for i in indices[:3])
    more = f" and {len(indices) - 3} more" if len(indices) > 3 else ""
    return shown + more


_MISSING_LABEL_TEXT = {"nan", "null"}  # how pandas/Excel/JSON write a missing value, never a class name


def _label_set(value: Any, sep: str) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return sorted({normalise_label(v) for v in value})
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return sorted({normalise_label(v) for v in json.loads(value)})
        except json.JSONDecodeError:
            pass
    return sorted({part.strip() for part in str(value).split(sep) if part.strip()})


def sort_labels(labels: set[str]) -> list[str]:
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _require_values(frame: pd.DataFrame, path: Path, column: str, what: str, fix: str) -> None:
    missing = [i for i, value in enumerate(frame[column].tolist()) if is_missing(value)]
    if missing:
        raise DataError(f"{path}: {what} in column {column!r} at {describe_rows(path, missing)}; fix: {fix}")


MAX_TEXT_CHARS = 1_000_000  # ~200x what a 512-token model reads: a cell this long is a broken file


def _containers(values: list[Any]) -> list[int]:
    return [i for i, value in enumerate(values) if isinstance(value, (list, tuple, dict, np.ndarray))]


def check_texts(frame: pd.DataFrame, path: Path, column: str) -> None:
    structured = _containers(frame[column].tolist())
    if structured:
        kind = "JSON object" if isinstance(frame[column][structured[0]], dict) else "list"
        raise DataError(f"{path}: the text in column {column!r} at {describe_rows(path, structured)} is a {kind}, not a string; "
                        "fix: one string per row (join the pieces; a second text goes in its own column, --text-pair-col)")
    _require_values(frame, path, column, "empty text", "remove those rows or fill in their text")
    lengths = frame[column].astype(str).str.len()
    if len(lengths) and lengths.max() > MAX_TEXT_CHARS:
        index = int(lengths.idxmax())
        raise DataError(f"{path}: the text at {describe_row(path, index)} has {int(lengths.max()):,} characters (an unclosed quote "
                        f"swallowing the rest of the file looks like this); fix: check the quoting, or split texts longer "
                        f"than {MAX_TEXT_CHARS:,} characters (the model reads only the first max-length tokens)")


def _check_labels_present(frame: pd.DataFrame, path: Path, column: str) -> None:
    _require_values(frame, path, column, "missing (NaN or empty) label", "label those rows or remove them")
    literal = [i for i, value in enumerate(frame[column].tolist())
               if isinstance(value, str) and value.strip().lower() in _MISSING_LABEL_TEXT]
    if literal:
        raise DataError(f"{path}: missing label (the text {frame[column][literal[0]]!r}) in column {column!r} at "
                        f"{describe_rows(path, literal)}; fix: label those rows or remove them")


def _check_label_shapes(path: Path, column: str, raw: list[Any], multi_label: bool | None) -> bool:
    """One label name per row, or (multi-label) a list of names per row; never an object, a list
    inside a list, or (with the mode not given) lists in some rows and single labels in others.
    Returns the mode: detected from list cells when not given."""
    objects = [i for i, value in enumerate(raw) if isinstance(value, dict)]
    if objects:
        raise DataError(f"{path}: the label in column {column!r} at {describe_rows(path, objects)} is a JSON object; fix: a label "
                        "name, or (multi-label) a list of label names")
    lists = _containers(raw)
    nested = [i for i in lists if _containers(list(raw[i]))]
    if nested:
        raise DataError(f"{path}: the label in column {column!r} at {describe_rows(path, nested)} holds a list or object inside "
                        "its list; fix: a flat list of label names, e.g. [\"sports\", \"politics\"]")
    if multi_label is False and lists:
        raise DataError(f"{path}: the label in column {column!r} at {describe_rows(path, lists)} is a list, but the run is "
                        "single-label; fix: one label per row, or pass --multi-label")
    if multi_label is None and lists and len(lists) < len(raw):
        single = next(i for i in range(len(raw)) if i not in set(lists))
        raise DataError(f"{path}: column {column!r} mixes lists of labels ({describe_row(path, lists[0])}) with single labels "
                        f"({describe_row(path, single)}); fix: a list in every row for multi-label (e.g. [\"pos\"]), or one "
                        "label per row")
    return bool(lists) if multi_label is None else multi_label


def prepare_split(
    path: Path,
    text_col: str | None,
    text_pair_col: str | None,
    label_col: str | None,
    multi_label: bool | None,
    label_sep: str,
    fmt: TableFormat | None = None,
    slice_cols: list[str] | tuple[str, ...] = (),
) -> tuple[pd.DataFrame, str, str | None, str, bool]:
    frame = read_table(path, fmt=fmt)
    text_col = pick_column(frame, path, text_col, TEXT_COLUMN_GUESSES, "--text-col")
    label_col = pick_column(frame, path, label_col, LABEL_COLUMN_GUESSES, "--label-col")
    if label_col in (text_col, text_pair_col):
        raise DataError(f"{path}: column {label_col!r} is both the text and the label; fix: pass --text-col and --label-col "
                        f"naming different columns (columns are: {', '.join(frame.columns)})")
    if text_pair_col is not None:
        pick_column(frame, path, text_pair_col, (), "--text-pair-col")
    check_texts(frame, path, text_col)
    if text_pair_col is not None:
        check_texts(frame, path, text_pair_col)
    _check_labels_present(frame, path, label_col)
    raw_labels = frame[label_col].tolist()
    multi_label = _check_label_shapes(path, label_col, raw_labels, multi_label)
    if multi_label:
        label_sets = [_label_set(v, label_sep) for v in raw_labels]
    else:
        label_sets = [[normalise_label(v)] for v in raw_labels]
    columns = {"text": frame[text_col].astype(str).tolist(), "label_names": label_sets}
    if text_pair_col is not None:
        columns["text_pair"] = frame[text_pair_col].astype(str).tolist()
    if slice_cols:
        columns.update(slice_columns(frame, path, slice_cols, label_col))
    return pd.DataFrame(columns), text_col, text_pair_col, label_col, multi_label


def encode_ids(frame: pd.DataFrame, label_to_id: dict[str, int], multi_label: bool) -> pd.DataFrame:
    frame = frame.copy()
    if multi_label:
        vectors = []
        for names in frame["label_names"]:
            vector = [0.0] * len(label_to_id)
            for name in names:
                vector[label_to_id[name]] = 1.0
            vectors.append(vector)
        frame["labels"] = vectors
    else:
        frame["labels"] = [label_to_id[names[0]] for names in frame["label_names"]]
    return frame


def _check_known_labels(frame: pd.DataFrame, path: Path, known: set[str], train_path: Path) -> None:
    for index, names in enumerate(frame["label_names"]):
        unseen = [name for name in names if name not in known]
        if unseen:
            raise DataError(
                f"{path}: label {unseen[0]!r} at {describe_row(path, index)} never occurs in the training data "
                f"{train_path}; fix: add training examples of {unseen[0]!r} or drop those rows"
            )


def split_validation(
    train: pd.DataFrame, fraction: float, seed: int, multi_label: bool
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    from sklearn.model_selection import train_test_split

    if len(train) < 4:
        raise DataError(
            f"only {len(train)} training examples, too few to hold out a validation split; "
            "fix: add examples or pass --validation FILE"
        )
    stratify = None
    how = "random"
    if not multi_label:
        keys = train["labels"]
        counts = keys.value_counts()
        n_val = max(1, int(round(len(train) * fraction)))
        if counts.min() >= 2 and n_val >= len(counts):
            stratify = keys
            how = "stratified"
        else:
            log.warning("Hint: some classes are too rare for a stratified split; using a random split")
    fit, held_out = train_test_split(
        train, test_size=fraction, random_state=seed, shuffle=True, stratify=stratify
    )
    return fit.reset_index(drop=True), held_out.reset_index(drop=True), how


def load_classification_data(
    data: str | Path,
    validation: str | Path | None = None,
    test: str | Path | None = None,
    text_col: str | None = None,
    text_pair_col: str | None = None,
    label_col: str | None = None,
    multi_label: bool | None = None,
    label_sep: str = ",",
    val_fraction: float = 0.1,
    seed: int = 42,
    fmt: TableFormat | None = None,
    label_names: list[str] | None = None,
    slice_cols: list[str] | tuple[str, ...] = (),
) -> ClassificationData:
    """Load and check the training file, plus a validation file or a seeded stratified split.
    ``label_names`` (--label-names) renames the label values in their sorted order (0, 1, ... or as
    they sort): a file labelled 0/1 trains a model whose labels read negative/positive. ``slice_cols``
    (--slice-col): columns kept beside each row (``slice:NAME``) for per-slice metrics."""
    train_path = Path(data)
    train, text_col, text_pair_col, label_col, multi_label = prepare_split(
        train_path, text_col, text_pair_col, label_col, multi_label, label_sep, fmt, slice_cols
    )
    labels = sort_labels({name for names in train["label_names"] for name in names})
    if len(labels) < 2:
        raise DataError(
            f"{train_path}: column {label_col!r} has a single class {labels[0]!r}; "
            "fix: classification needs examples of at least two classes"
        )
    values = list(labels)
    if label_names is not None:
        if len(label_names) != len(labels) or len(set(label_names)) != len(label_names):
            raise DataError(f"--label-names {','.join(label_names)}: {len(label_names)} names ({len(set(label_names))} distinct) "
                            f"for the {len(labels)} labels of {train_path} ({', '.join(labels)}, in this order); fix: one distinct "
                            "name per label, in that order")
        labels = list(label_names)
    rename = dict(zip(values, labels))
    train["label_names"] = [[rename[name] for name in names] for names in train["label_names"]]
    label_to_id = {name: i for i, name in enumerate(labels)}
    train = encode_ids(train, label_to_id, multi_label)

    def other_split(path: str | Path) -> pd.DataFrame:
        split_path = Path(path)
        frame, *_ = prepare_split(split_path, text_col, text_pair_col, label_col, multi_label, label_sep, fmt, slice_cols)
        _check_known_labels(frame, split_path, set(values), train_path)
        frame["label_names"] = [[rename[name] for name in names] for names in frame["label_names"]]
        return encode_ids(frame, label_to_id, multi_label)

    if validation is not None:
        validation_frame = other_split(validation)
        source = str(validation)
    else:
        train, validation_frame, how = split_validation(train, val_fraction, seed, multi_label)
        source = f"{how} {val_fraction:.0%} split of {train_path} (seed {seed})"
    test_frame = other_split(test) if test is not None else None
    return ClassificationData(
        labels=labels,
        multi_label=multi_label,
        train=train,
        validation=validation_frame,
        test=test_frame,
        text_col=text_col,
        text_pair_col=text_pair_col,
        label_col=label_col,
        validation_source=source,
        extra={"label_values": values} if label_names is not None else {},
    )


def read_texts_for_prediction(path: str | Path, text_col: str | None, text_pair_col: str | None) -> tuple[list[str], list[str] | None]:
    """Texts (and optional pairs) from a file, for ``predict --file``."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        check_data_path(path)
        raw = path.read_bytes()
        from thawkit.data.tables import decode_utf8

        lines = [line for line in decode_utf8(path, raw).splitlines() if line.strip()]
        if not lines:
            raise DataError(f"{path}: file is empty; fix: one text per line")
        return lines, None
    frame = read_table(path)
    text_col = pick_column(frame, path, text_col, TEXT_COLUMN_GUESSES, "--text-col")
    check_texts(frame, path, text_col)
    pairs = None
    if text_pair_col is not None:
        pick_column(frame, path, text_pair_col, (), "--text-pair-col")
        pairs = frame[text_pair_col].astype(str).tolist()
    return frame[text_col].astype(str).tolist(), pairs


def load_eval_split(
    data: str | Path,
    labels: list[str],
    multi_label: bool,
    text_col: str | None,
    text_pair_col: str | None,
    label_col: str | None,
    label_sep: str = ",",
    label_values: list[str] | None = None,
    slice_cols: list[str] | tuple[str, ...] = (),
) -> pd.DataFrame:
    """A labeled file checked against an existing label set (for ``thawkit evaluate``); a run trained
    with --label-names also takes the values it renamed (``label_values``: 0, 1 for negative, positive)."""
    path = Path(data)
    frame, *_ = prepare_split(path, text_col, text_pair_col, label_col, multi_label, label_sep, slice_cols=slice_cols)
    if label_values:
        rename = dict(zip(label_values, labels))
        frame["label_names"] = [[rename.get(name, name) for name in names] for names in frame["label_names"]]
    known = set(labels)
    for index, names in enumerate(frame["label_names"]):
        unseen = [name for name in names if name not in known]
        if unseen:
            raise DataError(
                f"{path}: label {unseen[0]!r} at {describe_row(path, index)} is not one the model was trained on "
                f"({', '.join(labels)}); fix: drop those rows or retrain with them"
            )
    return encode_ids(frame, {name: i for i, name in enumerate(labels)}, multi_label)
