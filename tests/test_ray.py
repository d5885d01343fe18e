"""Ray, really started: a local instance (2 CPUs, no dashboard) runs a comparison as Ray tasks,
a successive-halving search under Ray Tune's ASHA, and a 2-worker Ray Train run.

Workers are told to ship their run folders back (THAWKIT_RAY_SHIP_RUNS), so the path a
multi-node cluster takes (pack on the worker, unpack on the driver) is the one exercised here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

import thawkit
from thawkit.compare import compare
from thawkit.engine.programs.ray_cluster import SHIP_RUNS_ENV

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {SHIP_RUNS_ENV: "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield ray
    ray.shutdown()


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=1e-6) or (math.isnan(a) and math.isnan(b))
    return a == b


def test_compare_on_ray_equals_the_local_path(local_ray, tiny_bert, toy_csv, tmp_path):
    # The loss as metric: continuous values, so "equal to 1e-6" is a real check.
    options = dict(data=toy_csv, model=str(tiny_bert), strategies=["frozen", "gradual"], seeds=2, epochs=2, lr=3e-2, metric="loss",
                   max_length=32, batch_size=8, progress="off", measure_forgetting=False, advise=False, ray_cpus=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same work as a Ray task with one CPU
    try:
        local = compare(out=tmp_path / "local", cache_dir=tmp_path / "cache-local", **options)
    finally:
        torch.set_num_threads(threads)
    on_ray = compare(out=tmp_path / "ray", cache_dir=tmp_path / "cache-ray", ray=True, **options)

    assert [r["strategy"] for r in on_ray.rows] == [r["strategy"] for r in local.rows]
    for mine, theirs in zip(on_ray.rows, local.rows):
        assert mine["seeds"] == 2
        assert _close({k: v for k, v in mine.items() if k.startswith("validation_")},
                      {k: v for k, v in theirs.items() if k.startswith("validation_")})
    # (The winner is not compared: runs within one std of the best go to the faster one, a timing.)
    for run in (tmp_path / "local" / "runs").iterdir():
        twin = tmp_path / "ray" / "runs" / run.name
        assert _files(twin) == _files(run)
        assert _close(json.loads((twin / "metrics.json").read_text()), json.loads((run / "metrics.json").read_text()))
        history = [json.loads(line) for line in (twin / "history.jsonl").read_text().splitlines()]
        assert [h["epoch"] for h in history if "type" not in h] == [1.0, 2.0]
        # The frozen-layer pass ran once, in the warm-up task: every job found it in its cache.
        cache = json.loads((twin / "thawkit.json").read_text())["cache"]
        assert cache["used"] and cache["reused"] and cache["pass_seconds"] == 0
    results = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert results["ray"]["address"] == "local" and results["ray"]["cpus_per_job"] == 1
    assert (tmp_path / "ray" / "report.html").exists()
    assert not any(p.name.endswith((".partial", ".unpack")) for p in tmp_path.rglob("*"))


def _asha_decisions(curves: list[list[list[float]]], rungs: list[float]) -> list[bool]:
    """Which trials ASHA stops (reduction factor 2), given each trial's reported (epoch, score) in
    the order the trials ran: a trial reaching a rung below the median recorded there stops."""
    recorded: dict[float, list[float]] = {r: [] for r in rungs}
    stopped = []
    for curve in curves:
        mine: set[float] = set()
        stop = False
        for epoch, score in curve:
            for rung in sorted(rungs, reverse=True):
                if epoch < rung or rung in mine:
                    continue
                stop = bool(recorded[rung]) and score < float(np.nanpercentile(recorded[rung], 50))
                recorded[rung].append(score)
                mine.add(rung)
                break
            if stop:
                break
        stopped.append(stop)
    return stopped


def test_successive_halving_is_ray_tunes_asha(local_ray, tiny_bert, toy_csv, tmp_path):
    # 2 CPUs per trial: one trial at a time, so ASHA sees the trials in a fixed order. The loss as
    # metric (no ties); at this LR partial's epoch-1 loss is above frozen's, so ASHA has work to do.
    comparison = compare(data=toy_csv, model=str(tiny_bert), strategies=["frozen", "partial", "full"], seeds=1,
                         epochs=3, lr=3e-2, metric="loss", max_length=32, batch_size=8, progress="off",
                         measure_forgetting=False, advise=False, ray=True, ray_cpus=2, successive_halving=True,
                         cache_dir=tmp_path / "cache", out=tmp_path / "sh")
    results = json.loads((tmp_path / "sh" / "results.json").read_text())
    search = results["ray"]["search"]
    assert search["scheduler"].startswith("ASHA") and search["trials"] == 3
    assert search["completed_trials"] + search["stopped_trials"] == 3
    assert search["completed_trials"] >= 1 and search["stopped_trials"] >= 1
    rows = {r["strategy"]: r for r in comparison.rows}
    assert list(rows) and set(rows) == {"frozen", "partial", "full"}
    trials = {t["strategy"]: t for t in search["trial_reports"]}
    for name, row in rows.items():
        reports = trials[name]["reports"]
        if row["eliminated_at_rung"] is None:  # finished: a complete run folder, trained for every epoch
            (run,) = row["runs"]
            history = [json.loads(line) for line in (Path(run) / "history.jsonl").read_text().splitlines()]
            curve = [(h["epoch"], -h["validation"]["loss"]) for h in history if "type" not in h]
            assert [e for e, _ in curve] == [1.0, 2.0, 3.0]
            assert _close([list(p) for p in curve], reports[:3]) and reports[3][0] == 4.0  # then the final result
        else:  # stopped by ASHA at a rung: no run folder; its reported curve is kept
            assert row["runs"] == [] and row["stopped_trials"] == 1 and 1 <= row["rung_epochs"] < 3
            assert row["validation_loss_mean"] == pytest.approx(-reports[-1][1])
    # Exactly the trials ASHA's rule stops (rungs at 1, 2 and 4 epochs, 4 being the final report) were stopped.
    order = ["frozen", "partial", "full"]  # the order the trials ran in
    expected = _asha_decisions([trials[n]["reports"] for n in order], [1.0, 2.0, 4.0])
    assert expected == [rows[n]["eliminated_at_rung"] is not None for n in order]
    assert comparison.winner["strategy"] in {n for n, r in rows.items() if r["eliminated_at_rung"] is None}
    assert not (tmp_path / "sh" / "tune").exists()


def test_train_on_two_ray_train_workers(local_ray, tiny_bert, toy_csv, tmp_path):
    out = tmp_path / "run"
    run = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="gradual", epochs=3, lr=1e-3, max_length=32,
                        batch_size=8, progress="off", ray_workers=2, out=out)
    info = json.loads((out / "thawkit.json").read_text())
    assert info["world_size"] == 2 and info["ray_workers"] == 2
    # 108 training rows, batch 8 per worker on 2 workers: 7 steps per epoch, not 14.
    assert info["global_steps"] == 21
    assert [s["stage"] for s in info["stages"]] == [0, 1, 2, 3]
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "type" not in r] == [1.0, 2.0, 3.0]
    assert run.predict(["a great film"])[0]["label"] in {"negative", "positive"}
    assert _files(out) >= {"thawkit.json", "metrics.json", "model.safetensors", "config.json", "history.jsonl"}
    assert not any(p.name.endswith((".partial", ".ray")) for p in tmp_path.iterdir())
