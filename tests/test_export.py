"""`thawkit export --onnx`: parity with PyTorch at export time, the same predictions through
onnxruntime in predict/evaluate/serve, int8 with its metric change reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import thawkit
from thawkit.cli.app import main

from test_matrix import CONLL, PAIRS, QA_EDGE_CASES

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
    assert type(exported.model).__name__ == "OnnxModel"  # onnxruntime behind the run, no torch model
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


@pytest.fixture(scope="module")
def task_runs(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("export-tasks")
    (root / "ner.txt").write_text(CONLL)
    (root / "pairs.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS * 6))
    common = dict(model=str(tiny_bert), strategy="full", epochs=1, lr=5e-3, out=None, progress="off", measure_forgetting=False)
    return {
        "ner": thawkit.train(**{**common, "out": root / "ner"}, task="ner", data=root / "ner.txt", validation=root / "ner.txt",
                             max_length=32),
        "qa": thawkit.train(**{**common, "out": root / "qa"}, task="qa", data=QA_EDGE_CASES, validation=QA_EDGE_CASES, max_length=48),
        "similarity": thawkit.train(**{**common, "out": root / "sim"}, task="similarity", data=root / "pairs.tsv",
                                    validation=root / "pairs.tsv", max_length=32),
    }


def _same_answers(task, exported, run):
    if task == "ner":
        text = "Peter Blackburn visited Brussels and met EU officials"
        mine, theirs = exported.predict([text])[0]["entities"], run.predict([text])[0]["entities"]
        assert [(e["type"], e["start"], e["end"]) for e in mine] == [(e["type"], e["start"], e["end"]) for e in theirs]
        assert [e["score"] for e in mine] == pytest.approx([e["score"] for e in theirs], abs=1e-4)
        words = text.split()  # per word: the same tag with the same probability (entities may be few)
        (mine_tags, mine_scores), (their_tags, their_scores) = exported.word_predictions(words), run.word_predictions(words)
        assert mine_tags == their_tags and mine_scores == pytest.approx(their_scores, abs=1e-4) and len(mine_tags) == len(words)
        return
    if task == "qa":
        context = json.loads(QA_EDGE_CASES.read_text())["data"][0]["paragraphs"][0]["context"]
        questions = ["When was the lighthouse built?", "Who built it?"]
        mine, theirs = exported.predict(questions, [context] * 2), run.predict(questions, [context] * 2)
        assert [(a["answer"], a["start"], a["end"]) for a in mine] == [(a["answer"], a["start"], a["end"]) for a in theirs]
        return
    texts = ["a plane is taking off", "a cat sleeps on the sofa", "a man plays the guitar"]
    np.testing.assert_allclose(exported.embed(texts), run.embed(texts), atol=1e-4)
    assert exported.similarity(texts[:2], texts[1:]) == pytest.approx(run.similarity(texts[:2], texts[1:]), abs=1e-4)


@pytest.mark.parametrize("task", ["ner", "qa", "similarity"])
def test_every_task_exports_and_answers_like_pytorch(task, task_runs, tmp_path):
    run = task_runs[task]
    main(["export", str(run.path), "--onnx", "--out", str(tmp_path / "onnx")])
    facts = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert facts["parity_max_abs_diff"] <= 1e-4 and facts["outputs"]
    exported = thawkit.load(tmp_path / "onnx")
    assert type(exported.model).__name__ == "OnnxModel" and type(exported) is type(run)
    _same_answers(task, exported, run)


def test_int8_of_a_ner_run_reports_the_change_on_its_validation_file(task_runs, tmp_path):
    main(["export", str(task_runs["ner"].path), "--onnx", "--quantize", "int8-dynamic", "--out", str(tmp_path / "int8")])
    quantization = json.loads((tmp_path / "int8" / "export.json").read_text())["quantization"]
    assert quantization["metric"] == "f1" and quantization["validation_examples"] > 0
    assert quantization["fp32"] is not None and quantization["metric_change_points"] is not None
    tagger = thawkit.load(tmp_path / "int8")  # rows run alone, per-token logits padded back: the same entities in any batch
    sentences = ["Peter Blackburn visited Brussels", "EU rejects German call to boycott British lamb . " * 3]
    assert tagger.predict(sentences)[0] == tagger.predict(sentences[:1])[0]
    with pytest.raises(SystemExit) as exit_info:  # an export is not exported again
        main(["export", str(tmp_path / "int8"), "--onnx", "--out", str(tmp_path / "again")])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("kind", ["int8", "int8-dynamic"])
def test_int8_scores_a_text_the_same_in_any_batch(runs, tmp_path, kind):
    """Served int8 answers are reproducible: a text alone and inside a batch of 20 padded
    differently get the same logits. int8 (static) calibrates the activation scales on the run's
    training texts; int8-dynamic runs each row alone, unpadded, so its scales come from the text only."""
    from thawkit.data.probe import general_sentences

    texts = general_sentences()[:20]
    main(["export", str(runs["full"].path), "--onnx", "--quantize", kind, "--out", str(tmp_path / kind)])
    quantization = json.loads((tmp_path / kind / "export.json").read_text())["quantization"]
    if kind == "int8-dynamic":
        assert quantization["kind"].startswith("int8 dynamic") and quantization["row_by_row"]
    else:
        assert quantization["kind"].startswith("int8 static") and "training texts of the run" in quantization["calibration"]
    exported = thawkit.load(tmp_path / kind)
    alone = np.concatenate([exported.logits([text]) for text in texts])
    np.testing.assert_allclose(alone, exported.logits(texts), atol=1e-6)
    assert np.abs(alone - runs["full"].logits(texts)).max() < 0.05  # quantized, not broken


def test_an_export_folder_has_a_card_and_the_config_stock_onnx_loaders_read(runs, tmp_path):
    """README.md (huggingface_hub metadata, library onnx) and config.json beside model.onnx; the
    card's onnxruntime route (the graph on the tokenizer's inputs) gives the run's logits."""
    import onnxruntime
    from huggingface_hub import ModelCard
    from transformers import AutoConfig, AutoTokenizer

    main(["export", str(runs["full"].path), "--onnx", "--out", str(tmp_path / "onnx")])
    card = ModelCard.load(tmp_path / "onnx" / "README.md")
    assert card.data.library_name == "onnx" and "onnx" in card.data.tags and "onnxruntime.InferenceSession" in card.text
    assert AutoConfig.from_pretrained(str(tmp_path / "onnx")).id2label == runs["full"].model.config.id2label
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="np")
    logits = session.run(None, {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()})[0]
    np.testing.assert_allclose(logits, runs["full"].logits(TEXTS), atol=1e-4)
