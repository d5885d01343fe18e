"""Calibration and slices: a temperature fitted on validation and baked into the saved output layer
(same argmax, calibrated scores for every loader), ECE / Brier before and after in metrics.json, the
card and the report; per-slice scores (--slice-col) in train, evaluate, compare and the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import thawkit
from thawkit.cli.app import main
from thawkit.compare import compare
from thawkit.tasks.classification_calibration import bake_temperature, fit_temperature
from thawkit.tasks.classification_metrics import calibration_metrics
from thawkit.testing import write_toy_csv

# Small tiny-BERT runs that overfit 20% flipped labels: confident and often wrong, so a temperature fits.
OVERFIT = dict(strategy="full", epochs=8, lr=3e-3, early_stopping_patience=0, val_fraction=0.25, max_length=32,
               progress="off", measure_forgetting=False)


@pytest.fixture(scope="module")
def noisy_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noisy")
    frame = pd.read_csv(write_toy_csv(folder / "toy.csv", n=240))
    rng = np.random.default_rng(0)
    flip = rng.random(len(frame)) < 0.2
    frame.loc[flip, "label"] = np.where(frame.loc[flip, "label"] == "positive", "negative", "positive")
    words = frame["text"].str.len()
    frame["bucket"] = np.where(words > words.median(), "long", "short")
    frame["source"] = rng.choice(["forum", "shop", "news"], size=len(frame))
    frame.to_csv(folder / "noisy.csv", index=False)
    return folder / "noisy.csv"


@pytest.fixture(scope="module")
def calibrated_pair(tiny_models, noisy_csv, tmp_path_factory):
    """The same training twice (same seed): calibrated (the default) and --no-calibrate."""
    folder = tmp_path_factory.mktemp("runs")
    model = str(tiny_models["bert"])
    calibrated = thawkit.train(data=noisy_csv, test=noisy_csv, model=model, out=folder / "calibrated", slice_cols=["bucket", "source"],
                               **OVERFIT)
    plain = thawkit.train(data=noisy_csv, test=noisy_csv, model=model, out=folder / "plain", calibrate=False, **OVERFIT)
    return calibrated, plain


def test_temperature_is_fitted_where_scores_are_miscalibrated():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    signal = rng.normal(size=(600, 3))
    signal[np.arange(600), labels] += 1.5
    over, before, after, reason = fit_temperature(signal * 4, labels, multi_label=False)  # overconfident: T > 1
    assert reason is None and over > 1.5 and after < before
    under, *_ = fit_temperature(signal / 4, labels, multi_label=False)  # underconfident: T < 1
    assert under < 0.5
    assert over == pytest.approx(16 * under, rel=0.02)  # the same calibrated scores, whatever scale they came at
    matrix = (rng.random((600, 4)) < 0.3).astype(float)
    multi, *_ = fit_temperature(((matrix * 2 - 1) * 2 + rng.normal(size=(600, 4)) * 3) * 3, matrix, multi_label=True)
    assert multi > 1.5
    # Nothing to fit: a split without errors would ask for T -> 0.
    none, _, _, why = fit_temperature(np.eye(3)[labels] * 5, labels, multi_label=False)
    assert none is None and "no error" in why
    # The ECE of the calibrated scores is lower than the overconfident ones'.
    assert calibration_metrics(signal * 4, labels, False, over)["ece"] < calibration_metrics(signal * 4, labels, False)["ece"] / 2


@pytest.mark.parametrize("kind", ["bert", "roberta", "pooled", "lora"])
def test_baked_temperature_divides_the_logits_of_every_head_kind(kind, tiny_models):
    from transformers import AutoModelForSequenceClassification

    arch = "roberta" if kind == "roberta" else "bert"
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_models[arch]), num_labels=3)
    if kind == "pooled":
        from transformers import AutoModel

        from thawkit.models.pooled import PooledHeadClassifier

        model = PooledHeadClassifier(AutoModel.from_pretrained(str(tiny_models[arch])), 3, "mean", "mlp",
                                     "single_label_classification", {0: "a", 1: "b", 2: "c"})
    if kind == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    model.eval()
    inputs = {"input_ids": torch.tensor([[2, 5, 9, 11, 3], [2, 7, 8, 3, 0]]), "attention_mask": torch.tensor([[1] * 5, [1, 1, 1, 1, 0]])}
    with torch.no_grad():
        before = model(**inputs).logits
        layer = bake_temperature(model, 3, 2.5)
        after = model(**inputs).logits
    assert torch.allclose(after, before / 2.5, atol=1e-6), layer
    assert "original_module" not in layer


def test_a_calibrated_run_scores_the_uncalibrated_logits_over_its_temperature(calibrated_pair, noisy_csv, tmp_path, capsys):
    calibrated, plain = calibrated_pair
    facts = calibrated.info["calibration"]
    assert facts["applied"] and facts["validation_nll"]["after"] < facts["validation_nll"]["before"]
    assert plain.info["calibration"] == {"applied": False, "reason": "off (--no-calibrate)"}
    assert calibrated.info["plan"]["settings"]["calibrate"]["source"].startswith("on for classification")
    temperature = facts["temperature"]
    texts = pd.read_csv(noisy_csv)["text"].tolist()[:40]
    reloaded = thawkit.load(calibrated.path)
    for run in (calibrated, reloaded):  # in memory and from its folder: the temperature is in the saved weights
        np.testing.assert_allclose(run.logits(texts), plain.logits(texts) / temperature, atol=1e-4)
    assert [p["label"] for p in reloaded.predict(texts)] == [p["label"] for p in plain.predict(texts)]  # same argmax
    # metrics.json: the test split before (the plain run's scores) and after.
    test, plain_test = calibrated.metrics["test"], plain.metrics["test"]
    assert test["calibration"]["temperature"] == temperature and test["accuracy"] == plain_test["accuracy"]
    assert test["calibration"]["ece_uncalibrated"] == pytest.approx(plain_test["ece"], abs=1e-3)
    assert test["ece"] != pytest.approx(plain_test["ece"], abs=1e-4)
    assert sum(b["count"] for b in test["reliability"]) == test["num_examples"]
    assert "in-sample" in calibrated.metrics["validation"]["calibration"]["note"]
    # The stock loader reads the calibrated scores too (a standard folder, the temperature in the head).
    from transformers import pipeline

    stock = pipeline("text-classification", model=str(calibrated.path), top_k=None)
    stock_scores = {d["label"]: d["score"] for d in stock([texts[0]])[0]}
    assert stock_scores == pytest.approx(reloaded.predict(texts[0])[0]["scores"], abs=1e-5)
    card = (calibrated.path / "README.md").read_text()
    assert f"Scores are calibrated (temperature {temperature}" in card and "Scores are not calibrated (off" in \
        (plain.path / "README.md").read_text()
    main(["info", str(calibrated.path)])
    assert f"temperature {temperature}" in capsys.readouterr().out
    # evaluate reports ECE and Brier of the saved (calibrated) model.
    main(["evaluate", str(calibrated.path), "--data", str(noisy_csv), "--json"])
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["ece"] == pytest.approx(test["ece"], abs=0.02) and "brier" in evaluated


def test_slices_are_scored_per_value_in_metrics_the_card_and_evaluate(calibrated_pair, noisy_csv, capsys):
    calibrated, _ = calibrated_pair
    frame = pd.read_csv(noisy_csv)
    slices = calibrated.metrics["test"]["slices"]
    assert set(slices) == {"bucket", "source"}
    predicted = [p["label"] for p in calibrated.predict(frame["text"].tolist())]
    right = np.array(predicted) == frame["label"].to_numpy()
    for column, table in slices.items():
        assert sum(v["examples"] for v in table["values"].values()) == len(frame)
        for value, scores in table["values"].items():
            inside = (frame[column] == value).to_numpy()
            assert scores["examples"] == inside.sum() and scores["accuracy"] == pytest.approx(right[inside].mean(), abs=0.02)
        worst = min(table["values"], key=lambda v: table["values"][v]["accuracy"])
        assert table["worst"] == worst and table["gap"] == pytest.approx(table["accuracy"] - table["values"][worst]["accuracy"])
    assert "slices" in calibrated.metrics["validation"]  # the held-out split is sliced as well
    card = (calibrated.path / "README.md").read_text()
    assert "## Bias and limitations" in card and "Scores per `source` (test split)" in card
    assert f"Worst `bucket` slice: `{slices['bucket']['worst']}`" in card and "Training labels: " in card
    main(["evaluate", str(calibrated.path), "--data", str(noisy_csv), "--slice-col", "source", "--slice-col", "bucket", "--json"])
    evaluated = json.loads(capsys.readouterr().out)["slices"]
    assert evaluated["source"]["values"].keys() == slices["source"]["values"].keys()
    assert evaluated["bucket"]["worst"] == slices["bucket"]["worst"]
    main(["evaluate", str(calibrated.path), "--data", str(noisy_csv), "--slice-col", "bucket"])
    assert "(worst)" in capsys.readouterr().out


def test_report_shows_reliability_and_slices(calibrated_pair, tmp_path):
    calibrated, plain = calibrated_pair
    main(["report", str(calibrated.path), str(plain.path), "--out", str(tmp_path / "report")])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Calibration" in markdown and "## Slices (--slice-col)" in markdown
    assert f"| full (calibrated) | test | {calibrated.info['calibration']['temperature']} |" in markdown
    assert "| full (plain) | test | none (off (--no-calibrate)) |" in markdown
    page = (tmp_path / "report" / "report.html").read_text()
    assert 'id="chart-reliability"' in page and "<h2>Slices (--slice-col)</h2>" in page


def test_compare_slices_every_job(tiny_models, noisy_csv, tmp_path):
    result = compare(data=noisy_csv, model=str(tiny_models["bert"]), strategies=["frozen", "full"], epochs=1, max_length=32,
                     slice_cols=["source"], out=tmp_path / "cmp", advise=False)
    for row in result.rows:
        for run in row["runs"]:
            metrics = json.loads((Path(run) / "metrics.json").read_text())
            assert set(metrics["validation"]["slices"]) == {"source"}
    assert "## Slices (--slice-col)" in (result.path / "report.md").read_text()

