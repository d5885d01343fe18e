"""`thawkit lr-find`: the LR range test finds where the loss diverges and judges the configured LR."""

from __future__ import annotations

import json

import thawkit
from thawkit.cli.app import main


def test_range_test_finds_divergence_and_judges_the_lr(tiny_bert, toy_csv, tmp_path, capsys):
    finding = thawkit.lr_find(data=toy_csv, model=str(tiny_bert), strategy="full", max_length=16, lr=0.5, steps=80,
                              start_lr=1e-5, end_lr=100.0)
    assert finding.diverged_at is not None and finding.diverged_at < 100.0  # stopped early, at the blow-up
    assert len(finding.lrs) < 80 and finding.lrs == sorted(finding.lrs)
    assert "too high" in finding.verdict()
    report = tmp_path / "lr.json"
    main(["lr-find", "--data", str(toy_csv), "--model", str(tiny_bert), "--strategy", "llrd", "--max-length", "16",
          "--steps", "30", "--report", str(report)])
    saved = json.loads(report.read_text())
    assert saved["strategy"] == "llrd" and len(saved["lrs"]) == len(saved["losses"]) > 0
    assert "unreliable for fine-tuning" in " ".join(capsys.readouterr().out.split())
