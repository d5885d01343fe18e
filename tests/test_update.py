"""`thawkit update RUN --data new.csv`: a run continues on new data (new classes allowed) from its own
weights, with replay; judged on its own and the new validation examples; refused when it forgets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import thawkit
from thawkit.cli.app import main
from thawkit.engine.core.warm_start import WarmStart, canonical_name
from thawkit.guards.base import GuardError
from thawkit.testing import make_tiny_model, toy_sentiment_rows, write_toy_csv

SETTINGS = dict(epochs=5, lr=2e-3, batch_size=8, max_length=16, progress="off", measure_forgetting=False)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("update-model") / "bert", num_layers=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("update-data")
    old = write_toy_csv(root / "old.csv", n=240)
    three = pd.DataFrame(toy_sentiment_rows(240, seed=5, classes=3), columns=["text", "label"])
    three.to_csv(root / "new.csv", index=False)
    flipped = pd.DataFrame(toy_sentiment_rows(240, seed=7), columns=["text", "label"])
    flipped["label"] = flipped["label"].map({"positive": "negative", "negative": "positive"})
    flipped.to_csv(root / "flipped.csv", index=False)
    return {"old": old, "new": root / "new.csv", "flipped": root / "flipped.csv"}


@pytest.fixture(scope="module")
def old_run(model, data, tmp_path_factory):
    run = thawkit.train(data=data["old"], model=str(model), strategy="full", out=tmp_path_factory.mktemp("update-runs") / "old",
                        **SETTINGS)
    assert run.metrics["validation"]["accuracy"] > 0.9  # a run worth keeping
    return run


@pytest.fixture(scope="module")
def updated(old_run, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("update-new") / "new"
    return thawkit.update(old_run.path, data=data["new"], out=out)


def test_a_new_class_grows_the_head_and_the_old_classes_are_kept(old_run, updated):
    run, report = updated
    assert run.labels == ["negative", "positive", "neutral"]  # old ids first, the new class appended
    assert report["new_labels"] == ["neutral"] and report["verdict"] == "kept"
    assert report["new_validation"]["before"]["accuracy"] < 0.7  # the old run never says neutral
    assert report["new_validation"]["after"]["accuracy"] > 0.9
    assert report["old_validation"]["after"]["accuracy"] > 0.85 and report["forgetting"] <= 0.01
    assert run.predict(["okay average mixed fine words"])[0]["label"] == "neutral"
    # The user's choices of the old run carry over; the rest is planned for the new data.
    settings = run.info["plan"]["settings"]
    assert settings["lr"]["value"] == SETTINGS["lr"] and "the run being updated" in settings["lr"]["source"]
    assert settings["strategy"]["value"] == "full" and "the run being updated" in settings["strategy"]["source"]
    assert run.info["warm_start"]["tensors_grown"] == ["classifier.weight", "classifier.bias"]
    assert run.info["warm_start"]["run_tensors_unused"] == 0
    saved = json.loads((run.path / "update.json").read_text())
    assert saved["old_validation"]["after"] == report["old_validation"]["after"]
    assert len(run.info["update"]["pool"]) == 2
    reloaded = thawkit.load(run.path)  # a normal run
    assert [p["label"] for p in reloaded.predict(["great", "awful"])] == [p["label"] for p in run.predict(["great", "awful"])]


def test_the_old_validation_examples_are_the_runs_own(old_run, updated, data):
    """Rebuilt from the run's file and seeded split: the same rows the run was validated on."""
    from thawkit.config import make_config
    from thawkit.tasks import get_task

    run, report = updated
    own = get_task("classification").load_data(make_config(old_run.info["config"])).validation
    assert report["old_validation"]["examples"] == len(own) == old_run.metrics["validation"]["num_examples"]
    assert report["old_validation"]["before"]["accuracy"] == pytest.approx(old_run.metrics["validation"]["accuracy"])
    assert report["replayed_examples"] == report["replay_pool"]  # the default: every old training example
    assert run.info["num_train_examples"] == report["new_train_examples"] + report["replay_pool"]


def test_a_second_update_replays_from_every_source(updated, data, tmp_path):
    run, _ = updated
    again, report = thawkit.update(run.path, data=data["old"], out=tmp_path / "again", replay=50, epochs=1)
    assert report["sources"] == 3 and len(again.info["update"]["pool"]) == 3
    assert report["replay_pool"] > report["new_train_examples"]  # the first update's data and the original's
    assert report["replayed_examples"] == 50 and again.labels == run.labels


def test_forgetting_beyond_the_tolerance_is_refused(old_run, data, tmp_path):
    out = tmp_path / "flipped"
    with pytest.raises(GuardError, match="the update loses .* more than --tolerance 0.01; it is kept aside"):
        thawkit.update(old_run.path, data=data["flipped"], out=out, replay=0)
    assert not out.exists()
    aside = json.loads((tmp_path / "flipped-rejected" / "update.json").read_text())
    assert aside["verdict"] == "rejected" and aside["forgetting"] > 0.5
    run, report = thawkit.update(old_run.path, data=data["flipped"], out=out, replay=0, accept_forgetting=True, epochs=2)
    assert out.is_dir() and report["verdict"] == "kept: --accept-forgetting"


def test_a_warm_start_is_not_stopped_by_a_rise_of_its_loss():
    """Known examples start near zero loss; batches of a class not learned yet lift it: not a divergence."""
    from thawkit.guards.learning_rate import DivergenceMonitor

    losses = [0.1] * 5 + [1.0] * 10
    fresh, warm = DivergenceMonitor(1e-3), DivergenceMonitor(1e-3, watch_rise=False)
    assert [fresh.observe(x) for x in losses][-1] is not None
    assert all(warm.observe(x) is None for x in losses) and warm.observe(float("nan")) is not None


def test_warm_start_copies_old_rows_and_leaves_new_ones(model):
    from transformers import AutoModelForSequenceClassification

    old = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    torch.manual_seed(3)
    new = AutoModelForSequenceClassification.from_pretrained(model, num_labels=3)
    fresh_row = new.classifier.weight[2].detach().clone()
    facts = WarmStart.from_model("old", old).apply(new)
    assert torch.equal(new.classifier.weight[:2], old.classifier.weight) and torch.equal(new.classifier.weight[2], fresh_row)
    assert facts["tensors_grown"] == ["classifier.weight", "classifier.bias"] and facts["tensors_fresh"] == 0


def test_warm_start_reads_through_peft_wrappers(model):
    """A LoRA run continues its own adapter; a full run's weights land in a LoRA model's base layers."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    def lora(seed):
        torch.manual_seed(seed)
        base = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
        wrapped = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules=["query", "value"]))
        for name, param in wrapped.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param)  # trained: not the zeros a fresh adapter starts with
        return wrapped

    old, new = lora(1), lora(2)
    WarmStart.from_model("old", old).apply(new)
    for (name, a), (_, b) in zip(old.state_dict().items(), new.state_dict().items()):
        if "original_module" not in name:
            assert torch.equal(a, b), name
    assert canonical_name("base_model.model.bert.encoder.layer.0.attention.self.query.base_layer.weight") == \
        "bert.encoder.layer.0.attention.self.query.weight"
    full = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    with torch.no_grad():
        full.bert.encoder.layer[0].attention.self.query.weight.add_(1.0)
    target = lora(3)
    WarmStart.from_model("full", full).apply(target)
    assert torch.equal(target.base_model.model.bert.encoder.layer[0].attention.self.query.base_layer.weight,
                       full.bert.encoder.layer[0].attention.self.query.weight)


def test_the_calibration_is_undone_before_training_continues(old_run):
    from thawkit.tasks import get_task

    run = thawkit.load(old_run.path)
    temperature = 2.5
    run.info["calibration"] = {"applied": True, "temperature": temperature}  # as a calibrated run records it
    texts = ["great film", "awful plot"]
    calibrated = run.logits(texts)
    get_task("classification").old_model_for_update(run)
    np.testing.assert_allclose(run.logits(texts), calibrated * temperature, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strategy", sorted(set(thawkit.available_strategies()) - {"full"}))
def test_every_strategy_updates(strategy, model, data, tmp_path):
    """Adapters continue on the same base, feature heads from their body; each grows its output layer."""
    old = thawkit.train(data=data["old"], model=str(model), strategy=strategy, out=tmp_path / "old", **{**SETTINGS, "epochs": 1, "lr": None})
    run, report = thawkit.update(old.path, data=data["new"], out=tmp_path / "new", accept_forgetting=True, epochs=1)
    assert run.labels == ["negative", "positive", "neutral"] and run.info["strategy"] == strategy
    assert run.info["warm_start"]["tensors_copied"] > 0 and run.info["warm_start"]["run_tensors_unused"] == 0
    if (old.path / "adapter_config.json").is_file():
        assert (run.path / "adapter_config.json").is_file()  # still an adapter on the same base
        assert json.loads((run.path / "adapter_config.json").read_text())["base_model_name_or_path"] == str(model)
    assert thawkit.load(run.path).predict(["great"])[0]["label"] in run.labels


def test_the_command_line_prints_the_before_after_table(old_run, data, tmp_path, capsys):
    main(["update", str(old_run.path), "--data", str(data["new"]), "--out", str(tmp_path / "cli"), "--epochs", "1",
          "--accept-forgetting", "--replay", "20"])
    out = capsys.readouterr().out
    assert "the run's own" in out and "the new data's" in out and "new classes: neutral" in out
    assert "20 replayed" in out and f"run saved to {tmp_path / 'cli'}" in out.replace("\n", "")


def test_the_run_sets_task_model_and_strategy_the_user_may_not(model, data):
    """update's planner takes them from the run (its program's source), refuses them from the user."""
    from thawkit.errors import ConfigError
    from thawkit.planner import plan_run

    values = {"data": str(data["old"]), "model": str(model), "strategy": "full", "task": "classification"}
    inherited = {name: "the run being updated (RUN)" for name in ("model", "strategy", "task")}
    plan = plan_run(values, "update", inherited, dry_run=True)
    assert plan.config.model == str(model) and plan.source("model") == "the run being updated (RUN)"
    with pytest.raises(ConfigError, match="--model: thawkit update continues the run with its own"):
        plan_run(values, "update", {**inherited, "model": "command line (--model)"}, dry_run=True)
    with pytest.raises(ConfigError, match="--strategy: thawkit update continues the run with its own"):
        thawkit.update("RUN", data=str(data["old"]), strategy="lora")


def test_a_pruned_adalora_rank_fills_the_leading_block():
    """AdaLoRA saves each adapter at its pruned rank; the planned adapter starts at the initial rank."""
    old = torch.nn.Module()
    old.lora_A, old.lora_E = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.full((2, 1), 5.0))
    new = torch.nn.Module()
    new.lora_A, new.lora_E = torch.nn.Parameter(torch.zeros(4, 3)), torch.nn.Parameter(torch.zeros(4, 1))
    facts = WarmStart.from_model("old", old).apply(new)
    assert new.lora_A[:2].eq(1).all() and new.lora_A[2:].eq(0).all() and new.lora_E.flatten().tolist() == [5, 5, 0, 0]
    assert facts["tensors_grown"] == ["lora_A", "lora_E"]


def test_a_new_class_counts_against_the_old_examples_only_as_wrong_predictions():
    """Macro-F1 on the old validation examples averages their own classes: predicting a new class is
    an error there, but the new class is not a zero F1 in the average."""
    from types import SimpleNamespace

    from thawkit.tasks.classification_update import scores

    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "labels": [0, 0, 1, 1]})
    logits = np.array([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])  # the last one says the new class
    run = SimpleNamespace(logits=lambda texts, pairs=None: logits, multi_label=False)
    metrics = scores(run, frame, ["old-a", "old-b", "new"])
    assert metrics["accuracy"] == 0.75
    assert metrics["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2)  # not averaged with the new class's 0
