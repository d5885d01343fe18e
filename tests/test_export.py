"""`thawkit export --onnx`: parity with PyTorch at export time, the same predictions through
onnxruntime in predict/evaluate/serve, int8 with its metric change reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import thawkit
from thawkit.cli.app import main

TEXTS = ["the film was great and the music wonderful", "awful and boring", "the plot was fine"]


@pytest.fixture(scope="module")
def runs(tiny_bert, toy_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return {s: thawkit.train(data=toy_csv, model=str(tiny_bert), strategy=s, epochs=1, lr=5e-3, max_length=16, out=root / s,
                             progress="off", measure_forgetting=False) for s in ("full", "lora")}


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_onnx_predicts_what_pytorch_does(strategy, runs, tmp_path):
    run = runs[strategy]
    main(["export", str(run.path), "--onnx", "--out", str(tmp_path / "onnx")])
    facts = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert facts["parity_max_abs_diff"] <= 1e-4
    exported = thawkit.load(tmp_path / "onnx")
    assert type(exported).__name__ == "OnnxClassificationRun"
    np.testing.assert_allclose(exported.logits(TEXTS), run.logits(TEXTS), atol=1e-4)
    assert [p["label"] for p in exported.predict(TEXTS)] == [p["label"] for p in run.predict(TEXTS)]


def test_int8_reports_the_metric_change_and_serves(runs, toy_csv, tmp_path, capsys):
    from thawkit.serve import create_app, load_served

    main(["export", str(runs["full"].path), "--onnx", "--quantize", "int8", "--out", str(tmp_path / "int8")])
    quantization = json.loads((tmp_path / "int8" / "export.json").read_text())["quantization"]
    assert quantization["validation_examples"] > 0 and quantization["metric_change_points"] is not None
    assert (tmp_path / "int8" / "model-fp32.onnx").exists()
    assert "int8: validation" in capsys.readouterr().out
    int8 = thawkit.load(tmp_path / "int8")
    with TestClient(create_app(load_served({"int8": tmp_path / "int8"}))) as client:
        answer = client.post("/predict", json={"inputs": TEXTS[0]}).json()
    assert {d["label"]: d["score"] for d in answer} == pytest.approx(int8.predict(TEXTS[:1])[0]["scores"], abs=1e-6)


def test_export_refusals_are_one_line(runs, tmp_path, capsys):
    for args, fragment in [([str(runs["full"].path), "--out", str(tmp_path / "a")], "--onnx"),
                           ([str(runs["full"].path), "--onnx", "--quantize", "int4", "--out", str(tmp_path / "b")], "int8")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["export", *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and fragment in err and len(err.strip().splitlines()) == 1
