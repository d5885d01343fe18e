"""Long texts (--long-text window): overlapping windows that each train with their text's label, a
text's score pooling its windows', in train, predict, evaluate, serve and the ONNX export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import thawkit
from thawkit.cli.app import main
from thawkit.errors import ConfigError
from thawkit.tasks.classification_windows import pool_windows

FILLER = "the a of film movie scene plot story actor music and to it was is".split()
POSITIVE, NEGATIVE = "great wonderful superb fantastic".split(), "awful dreadful terrible boring".split()
SETTINGS = dict(strategy="full", epochs=6, lr=3e-3, max_length=32, early_stopping_patience=0, progress="off",
                measure_forgetting=False)


@pytest.fixture(scope="module")
def needle_csv(tmp_path_factory):
    """The word that decides the label sits after 45 filler words: past --max-length 32 tokens."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        label = i % 2
        words = [*rng.choice(FILLER, 45), rng.choice(POSITIVE if label else NEGATIVE), *rng.choice(FILLER, 3)]
        rows.append((" ".join(words), "positive" if label else "negative", "a" if i % 3 else "b"))
    path = tmp_path_factory.mktemp("long") / "needle.csv"
    pd.DataFrame(rows, columns=["text", "label", "source"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def runs(tiny_bert, needle_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("long-runs")
    return {mode: thawkit.train(data=needle_csv, test=needle_csv, model=str(tiny_bert), long_text=mode, out=root / mode,
                                slice_cols=["source"], **SETTINGS) for mode in ("truncate", "window")}


def test_windows_read_what_truncation_cuts_off(runs, needle_csv):
    truncated, windowed = runs["truncate"].metrics, runs["window"].metrics
    assert truncated["test"]["accuracy"] <= 0.6  # the label is never inside the first 32 tokens
    assert windowed["test"]["accuracy"] >= 0.9
    count = len(pd.read_csv(needle_csv))
    assert windowed["test"]["num_examples"] == count  # scored per text, not per window
    assert sum(v["examples"] for v in windowed["test"]["slices"]["source"]["values"].values()) == count
    plan = runs["window"].info["plan"]["settings"]
    assert plan["window_overlap"] == {"value": 8, "source": "a quarter of --max-length 32"}
    assert "long_text" not in runs["truncate"].info["plan"]["settings"] or \
        runs["truncate"].info["config"]["long_text"] == "truncate"


def test_a_text_scores_its_windows_pooled(runs, needle_csv, tiny_bert, capsys):
    run = thawkit.load(runs["window"].path)
    texts = pd.read_csv(needle_csv)["text"].tolist()[:5] + ["great"]  # a short text is one window
    encoded = run.tokenizer(texts, truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)
    mapping = encoded.pop("overflow_to_sample_mapping")
    assert len(mapping) > len(texts)  # the long ones made several windows
    batch = run.tokenizer.pad({k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")}, return_tensors="pt")
    with torch.no_grad():
        windows = run.model(**batch).logits.numpy()
    np.testing.assert_allclose(run.logits(texts), pool_windows(windows, mapping, len(texts), "mean"), atol=1e-5)
    np.testing.assert_allclose(run.logits(texts), runs["window"].logits(texts), atol=1e-5)  # as trained, as reloaded
    card = (run.path / "README.md").read_text()
    assert "Trained on overlapping windows of 32 tokens" in card
    main(["info", str(run.path)])
    assert "windows of 32 tokens, overlap 8, mean pooling" in capsys.readouterr().out


def test_window_runs_predict_evaluate_serve_and_export_pooled(runs, needle_csv, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from thawkit.serve import create_app, load_served

    run = runs["window"]
    texts = pd.read_csv(needle_csv)["text"].tolist()[:4]
    expected = run.predict(texts)
    main(["predict", str(run.path), *texts])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [p["label"] for p in printed] == [p["label"] for p in expected]
    main(["evaluate", str(run.path), "--data", str(needle_csv), "--json"])
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"], abs=0.02)
    with TestClient(create_app(load_served({"long": run.path}))) as client:
        answer = client.post("/predict", json={"inputs": texts[0]}).json()
    assert {d["label"]: d["score"] for d in answer} == pytest.approx(expected[0]["scores"], abs=1e-4)
    main(["export", str(run.path), "--onnx", "--out", str(tmp_path / "onnx")])
    exported = thawkit.load(tmp_path / "onnx")
    np.testing.assert_allclose(exported.logits(texts), run.logits(texts), atol=1e-4)


def test_window_settings_that_cannot_work_are_refused(tiny_bert, needle_csv, tmp_path):
    with pytest.raises(ConfigError, match="--window-overlap 16 is half of --max-length 32"):
        thawkit.plan(data=needle_csv, model=str(tiny_bert), long_text="window", window_overlap=16, max_length=32)
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"text": ["a b"] * 20, "second": ["c d"] * 20, "label": ["x", "y"] * 10}).to_csv(pairs, index=False)
    with pytest.raises(ConfigError, match="--long-text window is for single texts"):
        thawkit.plan(data=pairs, text_pair_col="second", model=str(tiny_bert), long_text="window")


def test_the_advisor_and_training_point_at_windows_when_texts_are_cut(tiny_bert, needle_csv, tmp_path, caplog):
    from thawkit.advisor import advise

    report = advise(data=needle_csv, model=str(tiny_bert), max_length=32)
    assert any("--long-text window" in note for note in report.profile.notes)
    with caplog.at_level("WARNING", logger="thawkit"):
        thawkit.train(data=needle_csv, model=str(tiny_bert), out=tmp_path / "cut", **{**SETTINGS, "epochs": 1})
    assert any("100% of training texts reach --max-length 32" in r.getMessage() and "--long-text window" in r.getMessage()
               for r in caplog.records)
