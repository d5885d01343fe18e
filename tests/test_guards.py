"""Every guard fires on a crafted bad case and stays silent on a good one; the forgetting meter."""

from __future__ import annotations

import math

import pytest
import torch

import thawkit
from thawkit.cli.app import main
from thawkit.guards.forgetting import linear_cka
from thawkit.guards.imbalance import balanced_class_weights, check_imbalance
from thawkit.guards.learning_rate import DivergenceMonitor, check_learning_rate
from thawkit.guards.overfitting import check_overfitting
from thawkit.guards.tokenizer import check_tokenizer


def test_learning_rate_guard():
    assert check_learning_rate("full", 3e-5, 1e-4) == []
    assert check_learning_rate("frozen", 1e-3, 5e-2) == []
    [finding] = check_learning_rate("full", 1e-2, 1e-4)
    assert "far above" in finding.message and "--lr" in finding.fix


def test_divergence_monitor():
    falling = DivergenceMonitor(lr=1e-3)
    assert all(falling.observe(1.0 - 0.01 * i) is None for i in range(40))
    rising = DivergenceMonitor(lr=0.5)
    findings = [rising.observe(0.7 * (1.1**i)) for i in range(20)]
    finding = next(f for f in findings if f is not None)
    assert finding.severity == "error" and "--lr 0.05" in finding.fix
    assert DivergenceMonitor(lr=1.0).observe(math.nan).severity == "error"
    # A small regression loss that wobbles up by 1.5x (0.028 -> 0.042, STS-B with LoRA) is not divergence.
    wobbling = DivergenceMonitor(lr=5e-4)
    assert all(wobbling.observe(0.028 if i < 10 else 0.045) is None for i in range(30))


def test_overfitting_guard():
    def record(epoch, train, val):
        return {"epoch": epoch, "train_loss": train, "validation": {"loss": val}}

    good = [record(1, 0.7, 0.6), record(2, 0.5, 0.5), record(3, 0.4, 0.45), record(4, 0.3, 0.44)]
    assert check_overfitting(good) == []
    bad = [record(1, 0.7, 0.5), record(2, 0.5, 0.45), record(3, 0.3, 0.5), record(4, 0.1, 0.6)]
    [finding] = check_overfitting(bad)
    assert "rose from 0.4500 to 0.6000" in finding.message and "epochs 2-4" in finding.message


def test_imbalance_guard_and_weights():
    assert check_imbalance({"a": 50, "b": 40}, "none", "accuracy") == []
    [finding] = check_imbalance({"a": 200, "b": 10}, "none", "accuracy")
    assert "20:1" in finding.message and "--class-weights auto" in finding.fix and "macro_f1" in finding.fix
    assert check_imbalance({"a": 200, "b": 10}, "auto", "macro_f1") == []
    assert balanced_class_weights([200, 10]) == pytest.approx([210 / 400, 210 / 20])


def test_tokenizer_guard(tmp_path, tiny_models):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models["bert"]))
    good_model = AutoModel.from_pretrained(str(tiny_models["bert"]))
    assert check_tokenizer(tokenizer, good_model, ["a perfectly ordinary sentence"]) == []
    # Vocabulary larger than the embedding matrix: an error.
    from transformers import BertConfig, BertModel

    small_vocab = BertModel(BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    findings = check_tokenizer(tokenizer, small_vocab, ["text"])
    assert any(f.severity == "error" and "embedding matrix only 1000 rows" in f.message for f in findings)
    # A BERT tokenizer on a RoBERTa model: the family does not match.
    roberta = AutoModel.from_pretrained(str(tiny_models["roberta"]))
    assert any("'roberta' model" in f.message for f in check_tokenizer(tokenizer, roberta, ["text"]))
    # Text the vocabulary does not cover.
    findings = check_tokenizer(tokenizer, good_model, ["ᚠᚢᚦᚨᚱᚲ ᚷᚹᚺᚾᛁ ᛃᛇᛈᛉᛊ"] * 5)
    assert any("[UNK]" in f.message for f in findings)


def test_guards_warn_by_default_and_fail_under_strict(tiny_bert, toy_csv, tmp_path, capsys):
    run = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="full", lr=5e-3, epochs=1, max_length=32, out=tmp_path / "warn")
    guards = [g["guard"] for g in run.info["guards"]]
    assert guards[0] == "learning-rate" and set(guards) <= {"learning-rate", "majority-class"}
    _only_true_collapse(run)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(toy_csv), "--model", str(tiny_bert), "--lr", "5e-3", "--strict", "--out", str(tmp_path / "strict")])
    assert exit_info.value.code == 2
    assert "learning-rate" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()


def test_divergence_stops_training_without_output(tiny_bert, toy_csv, tmp_path, monkeypatch):
    from thawkit.engine.core import trainer as trainer_module

    # Make the loss explode after a few steps, as a far-too-high learning rate does.
    original = trainer_module.Trainer.compute_loss
    calls = {"n": 0}

    def exploding(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = original(self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        calls["n"] += 1
        return loss * (1.5 ** calls["n"]) if model.training else loss

    monkeypatch.setattr(trainer_module.Trainer, "compute_loss", exploding)
    with pytest.raises(thawkit.ThawkitError, match="training diverged"):
        thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="full", epochs=4, batch_size=4, max_length=32, out=tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()


def test_class_weights_auto_trains(tiny_bert, tmp_path):
    rows = ["text,label"] + [f"ordinary text {i},common" for i in range(90)] + [f"rare text {i},rare" for i in range(9)]
    data = tmp_path / "imbalanced.csv"
    data.write_text("\n".join(rows))
    run = thawkit.train(data=data, model=str(tiny_bert), strategy="full", epochs=1, max_length=32, class_weights="auto", out=tmp_path / "r")
    # 89 training rows after the stratified 10% split: 81 common, 8 rare.
    assert run.info["class_weights"] == pytest.approx([89 / (2 * 81), 89 / (2 * 8)])
    # auto weights + macro-F1: the imbalance guard is satisfied (a tiny model after one epoch may
    # still predict one class, which the majority-class guard then says, truthfully).
    assert [g["guard"] for g in run.info["guards"]] in ([], ["majority-class"])
    _only_true_collapse(run)


def _only_true_collapse(run) -> None:
    """A majority-class finding only where the model really predicts a single class."""
    flagged = any(g["guard"] == "majority-class" for g in run.info["guards"])
    matrix = run.metrics["validation"]["confusion_matrix"]["matrix"]
    predicted_classes = sum(1 for j in range(len(matrix)) if any(row[j] for row in matrix))
    assert flagged == (predicted_classes == 1) == bool(run.info["failed"])


def test_linear_cka_properties():
    torch.manual_seed(0)
    x = torch.randn(200, 16)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ rotation) == pytest.approx(1.0)  # invariant to rotation and scale
    assert linear_cka(x, torch.randn(200, 16)) < 0.3


def test_forgetting_meter_frozen_none_high_lr_much_more(tiny_bert, toy_csv, tmp_path):
    common = dict(data=toy_csv, model=str(tiny_bert), epochs=2, max_length=32, early_stopping_patience=0, select_best=False)
    frozen = thawkit.train(**common, strategy="frozen", out=tmp_path / "frozen")
    gentle = thawkit.train(**common, strategy="full", lr=2e-5, out=tmp_path / "gentle")
    harsh = thawkit.train(**common, strategy="full", lr=5e-3, out=tmp_path / "harsh")
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in frozen.forgetting["cka"].values())
    assert frozen.forgetting["drift"] == pytest.approx(0.0, abs=1e-6)
    assert gentle.forgetting["drift"] < 0.01
    assert harsh.forgetting["drift"] > 10 * gentle.forgetting["drift"]
    assert harsh.forgetting["min_cka"] < gentle.forgetting["min_cka"]
    assert set(harsh.forgetting["cka"]) == {"embeddings", "layer.0", "layer.1"}


def test_progress_lines_are_never_silent_for_long(capsys):
    """--progress lines: a step line whenever ``every_seconds`` passed since the last line."""
    import time
    from types import SimpleNamespace

    from thawkit.engine.core.callbacks import LineProgressCallback

    callback = LineProgressCallback("accuracy", "run", every_seconds=0.05)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=100, epoch=0.0)
    callback.on_train_begin(None, state, None)
    state.global_step = 1
    callback.on_step_end(None, state, None)
    assert capsys.readouterr().out == ""  # too soon
    time.sleep(0.06)
    state.global_step, state.epoch = 10, 0.5
    callback.on_step_end(None, state, None)
    line = capsys.readouterr().out
    assert "run: step 10/100, epoch 0.50" in line and "steps/s" in line and "left" in line
