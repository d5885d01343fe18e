"""Unlabeled text: for domain-adaptive pretraining and for a teacher to label (distillation)."""

from __future__ import annotations

from pathlib import Path

from thawkit.errors import DataError


def read_texts(path: Path, text_col: str | None = None, flag: str = "--text") -> list[str]:
    """Plain text (one document per line), JSONL/CSV/TSV/Parquet with a text column, or a folder of .txt files."""
    from thawkit.data.tables import check_data_path, decode_utf8

    path = Path(path)
    check_data_path(path, f"check the {flag} path")
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise DataError(f"{path}: no .txt files in this folder; fix: one document per line in .txt files")
        return [t for f in files for t in read_texts(f, flag=flag)]
    if path.suffix.lower() in (".txt", ".text", ""):
        texts = [line.strip() for line in decode_utf8(path, path.read_bytes()).splitlines() if line.strip()]
    else:
        from thawkit.data.classification import TEXT_COLUMN_GUESSES, pick_column
        from thawkit.data.tables import read_table

        frame = read_table(path)
        column = pick_column(frame, path, text_col, TEXT_COLUMN_GUESSES, "--text-col")
        texts = [str(t).strip() for t in frame[column].tolist() if isinstance(t, str) and t.strip()]
    if len(texts) < 2:
        raise DataError(f"{path}: {len(texts)} non-empty texts; fix: give at least a few documents (one per line)")
    return texts
