"""``thawkit drift``: input drift (a two-sample classifier's AUC on embeddings) and prediction drift
(PSI of predicted labels), each against its threshold and the run's own validation split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.guards.drift import psi, two_sample_auc
from thawkit.errors import ConfigError
from thawkit.testing import write_toy_csv

OTHER = ["the quarterly invoice is attached for the shipment of steel pipes",
         "please reset my password for the billing portal before friday",
         "the patient was given 5 mg of the drug twice daily for two weeks",
         "our router drops the connection every night after the firmware update"]


def test_the_statistics_separate_what_differs():
    rng = np.random.default_rng(0)
    same_a, same_b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    shifted = rng.normal(size=(300, 8)) + 0.8
    assert two_sample_auc(same_a, same_b, 0) < 0.6 < 0.9 < two_sample_auc(same_a, shifted, 0)
    assert psi(np.array([50.0, 50.0]), np.array([50.0, 50.0])) == pytest.approx(0.0)
    assert psi(np.array([50.0, 50.0]), np.array([60.0, 40.0])) < 0.1 < 0.2 < psi(np.array([50.0, 50.0]), np.array([90.0, 10.0]))


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift")
    data = write_toy_csv(folder / "train.csv", n=240, seed=0)
    return thawkit.train(data=data, model=str(tiny_models["bert"]), strategy="full", epochs=6, lr=3e-3, max_length=32,
                         early_stopping_patience=0, progress="off", measure_forgetting=False, out=folder / "run")


def test_new_text_like_the_training_data_is_not_drift_and_other_text_is(run, tmp_path, capsys):
    same = write_toy_csv(tmp_path / "same.csv", n=200, seed=7)
    steady = thawkit.drift(run.path, same)
    assert not steady["drifted"] and steady["verdict"].startswith("no drift")
    assert steady["inputs"]["auc"] < steady["inputs"]["threshold"] and steady["predictions"]["psi"] < 0.2
    other = tmp_path / "other.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"text": [f"{rng.choice(OTHER)} {i}" for i in range(200)]}).to_csv(other, index=False)
    moved = thawkit.drift(run.path, other)
    assert moved["drifted"] and moved["inputs"]["drift"] and moved["inputs"]["auc"] > 0.9
    # Only one sentiment: what the model predicts moves as well (its validation predictions are balanced).
    positive = tmp_path / "positive.csv"
    frame = pd.read_csv(same)
    frame[frame["label"] == "positive"].to_csv(positive, index=False)
    skewed = thawkit.drift(run.path, positive)
    assert skewed["predictions"]["drift"] and skewed["predictions"]["predicted"]["positive"] >= 0.85
    main(["drift", str(run.path), "--data", str(other)])
    assert "drift: inputs DRIFTED" in capsys.readouterr().out
    main(["drift", str(run.path), "--data", str(same), "--json"])
    assert json.loads(capsys.readouterr().out)["drifted"] is False


def test_a_run_whose_training_file_is_gone_needs_a_reference(run, tmp_path):
    import shutil

    moved = tmp_path / "moved-run"
    shutil.copytree(run.path, moved)
    info = json.loads((moved / "thawkit.json").read_text())
    info["config"]["data"] = str(tmp_path / "gone.csv")
    (moved / "thawkit.json").write_text(json.dumps(info))
    same = write_toy_csv(tmp_path / "same.csv", n=100, seed=3)
    with pytest.raises(ConfigError, match="not readable here.*--reference FILE"):
        thawkit.drift(moved, same)
    report = thawkit.drift(moved, same, reference=write_toy_csv(tmp_path / "ref.csv", n=100, seed=4))
    assert report["inputs"]["reference_auc"] is None and not report["inputs"]["drift"]


def _psi_gauge(client, name):
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'thawkit_prediction_psi{{model="{name}"}}'):
            return float(line.split()[-1])
    return None


def test_the_server_reports_the_prediction_psi_over_its_last_predictions(run, tmp_path):
    from fastapi.testclient import TestClient

    from thawkit.serve import create_app, load_served

    frame = pd.read_csv(write_toy_csv(tmp_path / "stream.csv", n=300, seed=9))
    for texts, shifted in ((frame["text"].tolist(), False), (frame[frame["label"] == "positive"]["text"].tolist(), True)):
        with TestClient(create_app(load_served({"sentiment": run.path}))) as client:
            for start in range(0, 96, 8):
                assert client.post("/predict", json={"inputs": texts[start : start + 8]}).status_code == 200
            assert _psi_gauge(client, "sentiment") is None  # 96 predictions, fewer than 100: no reading yet
            for start in range(96, 128, 8):
                client.post("/predict", json={"inputs": texts[start : start + 8]})
            value = _psi_gauge(client, "sentiment")
            assert (value >= 0.2) if shifted else (value < 0.2), (shifted, value)
            assert 'thawkit_prediction_window{model="sentiment"} 128.0' in client.get("/metrics").text
