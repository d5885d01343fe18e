"""Read CSV, TSV, JSONL, Parquet or a ``datasets`` folder into a pandas DataFrame, with clear errors."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np
import pandas as pd

from thawkit.errors import DataError
from thawkit.paths import check_data_path

log = logging.getLogger("thawkit")

SUPPORTED = ".csv, .tsv, .jsonl, .json (lines), .parquet, or a folder saved with datasets' save_to_disk"


def decode_utf8(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "fix: re-save the file with UTF-8 encoding"
        ) from None


def _read_disk_dataset(path: Path, split: str | None) -> pd.DataFrame:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except Exception as exc:  # datasets raises several types for a folder it cannot read
        raise DataError(
            f"{path}: not a dataset folder ({type(exc).__name__}); fix: pass a file ({SUPPORTED})"
        ) from None
    if isinstance(loaded, DatasetDict):
        names = list(loaded.keys())
        chosen = split if split in loaded else ("train" if "train" in loaded else names[0] if len(names) == 1 else None)
        if chosen is None:
            raise DataError(f"{path}: holds splits {names}; fix: pass the split folder (e.g. {path}/{names[0]})")
        loaded = loaded[chosen]
    assert isinstance(loaded, Dataset)
    from thawkit.data.hub_datasets import named_labels

    return named_labels(loaded)


@dataclass(frozen=True)
class TableFormat:
    """What the file's extension cannot tell: --delimiter and --quotechar."""

    delimiter: str | None = None
    quotechar: str | None = None


def read_table(path: str | Path, split: str | None = None, tsv_quoting: bool = False, fmt: TableFormat | None = None) -> pd.DataFrame:
    """Read a data file (or a Hub dataset, ``hf:NAME[:SPLIT]``); every failure is a ``DataError``
    naming the file and the fix."""
    from thawkit.data.hub_datasets import is_hub_reference, read_hub_dataset

    if is_hub_reference(path):
        frame, fix = read_hub_dataset(str(path)), "name a split with examples"
    else:
        frame, fix = _read_local(Path(path), split, tsv_quoting, fmt or TableFormat()), "add labeled examples below the header"
    if len(frame) == 0:
        raise DataError(f"{path}: has no data rows; fix: {fix}")
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


def _read_local(path: Path, split: str | None, tsv_quoting: bool, fmt: TableFormat) -> pd.DataFrame:
    check_data_path(path)
    if path.is_dir():
        frame = _read_disk_dataset(path, split)
    else:
        suffix = path.suffix.lower()
        if suffix not in {".csv", ".tsv", ".tab", ".jsonl", ".json", ".parquet"}:
            raise DataError(f"{path}: unsupported file type {suffix!r}; fix: use {SUPPORTED}")
        raw = path.read_bytes()
        if not raw.strip():
            raise DataError(f"{path}: file is empty; fix: add a header row and at least two labeled examples")
        try:
            if suffix == ".parquet":
                frame = pd.read_parquet(io.BytesIO(raw))
            else:
                text = decode_utf8(path, raw)
                if suffix in {".jsonl", ".json"}:
                    frame = _read_json_lines(path, text)
                else:
                    sep = fmt.delimiter or ("," if suffix == ".csv" else "\t")
                    _check_header(path, text, sep)
                    # TSV is read without quote handling, as GLUE-style TSVs are; empty cells stay "".
                    quoted = sep != "\t" or tsv_quoting or fmt.quotechar is not None or _tsv_is_quoted(path, text)
                    frame = pd.read_csv(
                        io.StringIO(text),
                        sep=sep,
                        quotechar=fmt.quotechar or '"',
                        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
                        keep_default_na=False,
                        dtype=str,
                    )
        except DataError:
            raise
        except (pd.errors.ParserError, ValueError, OSError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{path}: cannot parse ({first_line}); fix: check the file format ({SUPPORTED})") from None
    return frame


def _tsv_is_quoted(path: Path, text: str) -> bool:
    """GLUE-style TSVs are unquoted (a '"' is a literal character); TSVs written by Python's csv
    module or pandas wrap cells holding quotes in '"..."' with inner quotes doubled. Read the second
    kind with quoting, or its texts keep the outer quotes and doubled '""' silently."""
    quoted = literal = 0
    for line in text.splitlines()[1:5000]:
        for cell in line.split("\t"):
            if not cell.startswith('"'):
                continue
            inner = cell[1:-1] if len(cell) >= 2 and cell.endswith('"') else None
            if inner is None or '"' in inner.replace('""', ""):
                literal += 1
            else:
                quoted += 1
    if quoted and literal:
        log.warning("%s: %d cells look CSV-quoted ('\"...\"') and %d do not; read without quoting, so quotes stay in the "
                    "texts; fix: re-save the file consistently (or as .csv)", path, quoted, literal)
    return quoted > 0 and literal == 0


def _check_header(path: Path, text: str, sep: str) -> None:
    """pandas renames a repeated column to 'name.1' silently; which one the user meant is unknowable."""
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=sep), [])
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            raise DataError(f"{path}: column {name!r} appears twice in the header; fix: give every column a distinct name")
        seen.add(name)


def _read_json_lines(path: Path, text: str) -> pd.DataFrame:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of objects is accepted too
        try:
            return pd.DataFrame(json.loads(stripped))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}; fix: repair the file") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}: line {number} is not valid JSON ({exc.msg}); fix: one JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number} is not a JSON object; fix: one JSON object per line")
        records.append(record)
    return pd.DataFrame.from_records(records)


def pick_column(frame: pd.DataFrame, path: Path, wanted: str | None, guesses: tuple[str, ...], flag: str) -> str:
    if wanted is not None:
        if wanted not in frame.columns:
            raise DataError(
                f"{path}: no column {wanted!r}; columns are: {', '.join(frame.columns)}; "
                f"fix: pass {flag} with one of them"
            )
        return wanted
    for guess in guesses:
        if guess in frame.columns:
            return guess
    if len(frame.columns) == 1:
        other = next((sep for sep in (";", "|", "\t", ",") if sep in frame.columns[0]), None)
        if other is not None:
            shown = "tab" if other == "\t" else other
            raise DataError(f"{path}: one column {frame.columns[0]!r}: the file is separated by {shown!r}, not what its "
                            f"extension says; fix: pass --delimiter '{shown}'")
    raise DataError(
        f"{path}: cannot tell which column to use for {flag}; columns are: {', '.join(frame.columns)}; "
        f"fix: pass {flag} NAME"
    )


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


_INTEGRAL_TEXT = re.compile(r"-?\d+\.0*")


def normalise_label(value: Any) -> str:
    """Labels are kept as strings; integral floats (1.0, from a column pandas read as float, or the
    text "1.0" beside "1") become '1', so one class is never two."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = str(value).strip()
    return str(int(float(text))) if _INTEGRAL_TEXT.fullmatch(text) else text
