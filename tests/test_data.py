"""Data loading: formats, column mapping, labels, splits."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from thawkit.data import load_classification_data
from thawkit.testing import toy_sentiment_rows


@pytest.fixture()
def frame() -> pd.DataFrame:
    rows = toy_sentiment_rows(60, classes=3)
    return pd.DataFrame(rows, columns=["sentence", "intent"])


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "disk"])
def test_every_format_loads_the_same(tmp_path, frame, fmt):
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        from datasets import Dataset

        Dataset.from_pandas(frame).save_to_disk(str(path))
    data = load_classification_data(path, text_col="sentence", label_col="intent", seed=1)
    assert data.labels == ["negative", "neutral", "positive"]
    assert len(data.train) + len(data.validation) == 60
    assert set(data.train["text"]) | set(data.validation["text"]) == set(frame["sentence"])


def test_stratified_seeded_split(tmp_path, frame):
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    a = load_classification_data(path, text_col="sentence", label_col="intent", val_fraction=0.2, seed=3)
    b = load_classification_data(path, text_col="sentence", label_col="intent", val_fraction=0.2, seed=3)
    c = load_classification_data(path, text_col="sentence", label_col="intent", val_fraction=0.2, seed=4)
    assert list(a.validation["text"]) == list(b.validation["text"])
    assert list(a.validation["text"]) != list(c.validation["text"])
    assert a.validation["labels"].value_counts().tolist() == [4, 4, 4]  # 20% of 20 per class
    assert "stratified" in a.validation_source


def test_integer_labels_sort_numerically(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 11} for i in range(44)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = load_classification_data(path)
    assert data.labels == [str(i) for i in range(11)]
    assert set(data.train["labels"]) <= set(range(11))


def test_column_guessing_and_pairs(tmp_path):
    path = tmp_path / "pairs.tsv"
    lines = ["sentence1\tsentence2\tlabel"] + [f"a {i}\tb {i}\t{i % 2}" for i in range(20)]
    path.write_text("\n".join(lines))
    data = load_classification_data(path, text_pair_col="sentence2")
    assert data.text_col == "sentence1" and data.label_col == "label"
    assert list(data.train.columns) == ["text", "label_names", "text_pair", "labels"]


def test_multi_label_from_lists_and_separators(tmp_path):
    jsonl = tmp_path / "ml.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": f"t{i}", "label": ["a", "b"][: 1 + i % 2] + (["c"] if i % 3 == 0 else [])}) for i in range(30)))
    data = load_classification_data(jsonl)
    assert data.multi_label and data.labels == ["a", "b", "c"]
    assert data.train["labels"].iloc[0] in ([1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    csv = tmp_path / "ml.csv"
    csv.write_text("text,label\n" + "".join(f"t{i},\"a|{'b' if i % 2 else 'c'}\"\n" for i in range(20)))
    data = load_classification_data(csv, multi_label=True, label_sep="|")
    assert data.labels == ["a", "b", "c"]


def test_tsv_written_by_python_csv_reads_without_quote_artifacts(tmp_path):
    """A TSV written by the csv module quotes cells that hold quotes; the texts come back as written."""
    import csv

    from thawkit.data.tables import read_table

    texts = ['he said "great film"', "plain text", '"fully quoted"', "it's fine"]
    path = tmp_path / "news.tsv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["text", "label"])
        writer.writerows([(t, "a") for t in texts])
    assert read_table(path)["text"].tolist() == texts


def test_glue_style_tsv_keeps_literal_quotes(tmp_path):
    from thawkit.data.tables import read_table

    path = tmp_path / "glue.tsv"
    path.write_text('sentence\tlabel\n"the film" was ok\t1\nit is " odd\t0\n', encoding="utf-8")
    assert read_table(path)["sentence"].tolist() == ['"the film" was ok', 'it is " odd']


def test_delimiter_and_quotechar_flags(tmp_path):
    from thawkit.config import make_config
    from thawkit.data.classification import load_classification_data

    rows = "".join(f"'good; {i}';pos\n'bad {i}';neg\n" for i in range(6))
    path = tmp_path / "semi.csv"
    path.write_text("text;label\n" + rows)
    fmt = make_config({"data": str(path), "delimiter": ";", "quotechar": "'"}).table_format()
    data = load_classification_data(path, fmt=fmt)
    assert sorted(data.labels) == ["neg", "pos"] and "good; 0" in set(data.train["text"]) | set(data.validation["text"])
    assert make_config({"data": "x", "delimiter": "tab"}).delimiter == "\t"
