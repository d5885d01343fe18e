"""Fuzzing the readers and the config: any input either loads or gives the clean ThawkitError,
never another exception (which the CLI would turn into exit code 1, "a bug")."""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thawkit.errors import ThawkitError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CELLS = st.text(alphabet=st.sampled_from(list('ab,;\t"\'\n\r 1.0NaN\\[]{}:é')), max_size=12)


# One folder for every generated file, removed at exit (a folder per example left thousands in /tmp).
_FOLDER = tempfile.TemporaryDirectory(prefix="fuzz-")
_NUMBERS = itertools.count()


def _file(suffix: str, data: bytes) -> Path:
    path = Path(_FOLDER.name) / f"data{next(_NUMBERS)}{suffix}"
    path.write_bytes(data)
    return path


@FUZZ
@given(body=st.lists(st.lists(CELLS, min_size=1, max_size=4), max_size=8), suffix=st.sampled_from([".csv", ".tsv"]),
       header=st.sampled_from(["text,label", "text\tlabel", "sentence,label,label", "label,text", ""]))
def test_classification_files_load_or_fail_cleanly(body, suffix, header):
    from thawkit.data.classification import load_classification_data

    sep = "," if suffix == ".csv" else "\t"
    text = header + "\n" + "\n".join(sep.join(row) for row in body)
    try:
        data = load_classification_data(_file(suffix, text.encode("utf-8")), val_fraction=0.25)
    except ThawkitError:
        return
    assert len(data.labels) >= 2 and len(data.train) > 0


@FUZZ
@given(raw=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"]))
def test_any_bytes_read_as_a_table_or_fail_cleanly(raw, suffix):
    from thawkit.data.tables import read_table

    try:
        read_table(_file(suffix, raw))
    except ThawkitError:
        pass


@FUZZ
@given(lines=st.lists(st.one_of(st.just(""), st.just("-DOCSTART- -X- O"),
                                st.builds(lambda w, t: f"{w} {t}", st.text("abcXY.", min_size=1, max_size=5),
                                          st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "X-ORG", "I-", "B-", ""]))),
                      max_size=20))
def test_conll_files_load_or_fail_cleanly(lines):
    from thawkit.data.ner import read_ner_file

    try:
        read_ner_file(_file(".txt", "\n".join(lines).encode("utf-8")))
    except ThawkitError:
        pass


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 60) | st.text("ab 1850", max_size=6),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(
                        st.sampled_from(["data", "paragraphs", "context", "qas", "id", "question", "answers", "text",
                                         "answer_start", "is_impossible", "title"]), children, max_size=4),
                    max_leaves=25)


@FUZZ
@given(payload=JSON)
def test_squad_files_load_or_fail_cleanly(payload):
    from thawkit.tasks.qa import read_squad

    try:
        examples = read_squad(_file(".json", json.dumps(payload).encode("utf-8")))
    except ThawkitError:
        return
    for example in examples:
        for answer in example.answers:
            start = answer["answer_start"]
            assert example.context[start : start + len(answer["text"])] == answer["text"]


@FUZZ
@given(values=st.dictionaries(
    st.sampled_from(["data", "epochs", "lr", "batch_size", "max_length", "strategy", "task", "metric", "warmup_ratio",
                     "strategy_options", "checkpoint_every", "keep_checkpoints", "class_weights", "progress", "seed"]),
    st.none() | st.booleans() | st.integers(-3, 5000) | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    max_size=6))
def test_config_validates_or_fails_cleanly(values):
    from thawkit.config import make_config

    try:
        make_config({"data": "x.csv", **values})
    except ThawkitError:
        pass
