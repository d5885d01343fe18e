"""Speed mechanisms (their figures are in docs/benchmarks.md, never asserted as times here): bf16
autocast where the hardware is fast at it, fp32 on request; length-grouped batches for every task
whose examples are one sequence."""

from __future__ import annotations

import pytest

import thawkit
from thawkit.models.hardware import fast_bf16_available


def test_precision_auto_follows_the_hardware_and_fp32_is_exact(tiny_bert, toy_csv, tmp_path):
    common = dict(data=toy_csv, model=str(tiny_bert), strategy="full", epochs=1, max_length=32, batch_size=16, seed=3,
                  progress="off", measure_forgetting=False, early_stopping_patience=0, select_best=False)
    auto = thawkit.train(**common, out=tmp_path / "auto")
    expected = "bf16 autocast, fp32 weights" if fast_bf16_available() else "fp32"
    assert auto.info["precision"] == expected and auto.info["config"]["precision"] == ("bf16" if fast_bf16_available() else "fp32")
    assert auto.info["plan"]["settings"]["precision"]["source"].startswith("auto: ")  # the plan says why
    fp32_a = thawkit.train(**common, precision="fp32", out=tmp_path / "a")
    fp32_b = thawkit.train(**common, precision="fp32", out=tmp_path / "b")
    assert fp32_a.info["precision"] == "fp32"
    assert fp32_a.metrics["validation"]["loss"] == fp32_b.metrics["validation"]["loss"]  # fp32 is reproducible bit for bit


@pytest.mark.skipif(not fast_bf16_available(), reason="no fast bf16 on this CPU/GPU")
def test_bf16_autocast_trains_as_well_as_fp32(tiny_bert, tmp_path):
    """Master weights stay fp32 (the saved model too); the metric is that of fp32 training."""
    import torch

    from thawkit.testing import write_toy_csv

    data = write_toy_csv(tmp_path / "toy.csv", n=240)
    # lr 2e-3 with the head at the same rate: what this tiny model learns the toy task with (the 10x head
    # measured for MiniLM full fine-tuning would put the head at 2e-2 here); the point is bf16 against fp32.
    common = dict(data=data, model=str(tiny_bert), strategy="full", epochs=5, lr=2e-3, head_lr_mult=1.0, max_length=16,
                  batch_size=8, seed=3, progress="off", measure_forgetting=False)
    bf16 = thawkit.train(**common, precision="bf16", out=tmp_path / "bf16")
    fp32 = thawkit.train(**common, precision="fp32", out=tmp_path / "fp32")
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert bf16.metrics["validation"]["accuracy"] >= fp32.metrics["validation"]["accuracy"] - 0.05
    assert bf16.metrics["validation"]["accuracy"] > 0.8


def test_ner_batches_are_grouped_by_length(tiny_bert, tmp_path, monkeypatch):
    import thawkit.engine.core.loop as loop

    seen = {}
    original = loop.example_lengths

    def recording(dataset):
        seen["lengths"] = original(dataset)
        return seen["lengths"]

    monkeypatch.setattr(loop, "example_lengths", recording)
    data = tmp_path / "ner.txt"
    data.write_text("\n\n".join(["Peter B-PER\nBlackburn I-PER\nvisited O\nBrussels B-LOC\n. O", "EU B-ORG\nrejects O"] * 10) + "\n")
    thawkit.train(task="ner", data=data, validation=data, model=str(tiny_bert), epochs=1, max_length=32, out=tmp_path / "run",
                  progress="off", measure_forgetting=False)
    assert seen["lengths"] is not None and len(seen["lengths"]) == 20 and len(set(seen["lengths"])) == 2
