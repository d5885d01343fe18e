"""Configs (YAML + flag overrides, shipped presets) and the public Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.config import load_yaml_config, make_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"


@pytest.mark.parametrize("preset", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_preset_validates(preset):
    config = make_config(load_yaml_config(preset), source=str(preset))
    assert config.strategy in thawkit.available_strategies()
    thawkit.registry.get_strategy_class(config.strategy).Config(**config.strategy_options)  # strategy options validate too


def test_yaml_config_with_flag_overrides(tiny_bert, toy_csv, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: {toy_csv}\nmodel: {tiny_bert}\nstrategy: partial\nstrategy_options:\n  freeze_layers: 2\n"
        f"epochs: 5\nlr: 1.0e-3\nmax_length: 32\nout: {tmp_path / 'from-yaml'}\n"
    )
    main(["train", "--config", str(config), "--epochs", "1", "--out", str(tmp_path / "run"), "--seed", "7"])
    saved = json.loads((tmp_path / "run" / "thawkit.json").read_text())
    assert saved["config"]["epochs"] == 1  # the flag won
    assert saved["config"]["seed"] == 7
    assert saved["config"]["lr"] == 1e-3  # the YAML value stayed
    assert saved["strategy_options"] == {"freeze_layers": 2}
    assert not (tmp_path / "from-yaml").exists()


def test_public_api_is_explicit():
    assert sorted(thawkit.__all__) == sorted(
        ["__version__", "train", "plan", "load", "lr_find", "dapt", "distill", "select", "push", "drift", "update", "prompt", "Run", "RunBase", "RunPlan", "TrainConfig", "ThawkitError",
         "DataError", "ConfigError",
         "RunDirError", "available_strategies", "available_tasks", "register_strategy", "register_task"]
    )
    for name in thawkit.__all__:
        assert hasattr(thawkit, name)
    assert thawkit.available_strategies() == ["adalora", "dora", "fewshot", "frozen", "full", "gradual", "ia3", "llrd", "lora",
                                           "partial", "prompt"]
    assert thawkit.available_tasks() == ["classification", "generation", "ner", "qa", "similarity"]


def test_run_directory_contents(tiny_bert, toy_csv, tmp_path):
    run = thawkit.train(data=toy_csv, test=toy_csv, model=str(tiny_bert), strategy="frozen", epochs=2,
                        max_length=32, out=tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "labels.json", "thawkit.json", "metrics.json",
            "history.jsonl"} <= files
    assert "checkpoints" not in files
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics) == {"validation", "test", "forgetting"}
    assert metrics["forgetting"]["mean_cka"] == pytest.approx(1.0)  # frozen: the backbone did not move
    for split in (metrics["validation"], metrics["test"]):
        assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "loss"} <= set(split)
        assert set(split["per_class"]) == {"negative", "positive"}
        matrix = split["confusion_matrix"]["matrix"]
        assert sum(map(sum, matrix)) == split["num_examples"]
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == {"labels": ["negative", "positive"], "multi_label": False}
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["type"] == "forgetting"
    history = history[:-1]
    assert [h["epoch"] for h in history] == [1.0, 2.0]
    for record in history:
        assert {"step", "epoch", "train_loss", "validation", "trainable_params", "trainable_blocks"} <= set(record)
        assert record["trainable_blocks"] == ["head"]
        assert "accuracy" in record["validation"]
    assert run.info["trainable_params"] < run.info["total_params"] / 10


def test_multi_label_end_to_end(tiny_bert, tmp_path):
    rows = []
    for i in range(80):
        labels = [name for name, on in (("sports", i % 2 == 0), ("politics", i % 3 == 0), ("tech", i % 5 == 0)) if on] or ["other"]
        rows.append(json.dumps({"text": f"news item {i} about " + " and ".join(labels), "label": labels}))
    data = tmp_path / "ml.jsonl"
    data.write_text("\n".join(rows))
    run = thawkit.train(data=data, model=str(tiny_bert), strategy="full", epochs=1, max_length=32, out=tmp_path / "run")
    assert run.multi_label and run.info["problem_type"] == "multi_label_classification"
    prediction = run.predict("news item about sports")[0]
    assert set(prediction["scores"]) == {"other", "politics", "sports", "tech"}
    assert "micro_f1" in run.metrics["validation"]
    reloaded = thawkit.load(tmp_path / "run")
    assert reloaded.predict("news item about sports") == [prediction]
    assert reloaded.evaluate(data)["num_examples"] == 80


def test_evaluate_and_predict_commands(tiny_bert, toy_csv, tmp_path, capsys):
    thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="frozen", epochs=1, max_length=32, out=tmp_path / "run")
    capsys.readouterr()
    main(["evaluate", str(tmp_path / "run"), "--data", str(toy_csv), "--json"])
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_examples"] == 120
    texts = tmp_path / "texts.txt"
    texts.write_text("a great film\nawful plot\n")
    main(["predict", str(tmp_path / "run"), "--file", str(texts)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["a great film", "awful plot"]
    main(["info", str(tmp_path / "run")])
    assert "frozen" in capsys.readouterr().out
