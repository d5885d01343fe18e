"""Aggregate finished runs into a results table (mean ± std over seeds) and name the winner."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from thawkit.rundir import read_history, read_run_files


def load_run_summary(path: Path) -> dict[str, Any]:
    run, info, _labels = read_run_files(path)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return {"path": str(run), "info": info, "metrics": metrics, "history": read_history(run)}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def scalar_metric_names(summaries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(split, metric) for every number in the runs' metrics.json validation and test entries."""
    names: dict[tuple[str, str], None] = {}
    for summary in summaries:
        for split in ("validation", "test"):
            for name, value in (summary["metrics"].get(split) or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and not name.startswith("num_"):
                    names[(split, name)] = None
    return list(names)


def aggregate(summaries: list[dict[str, Any]], metric: str, extra: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per strategy; ``extra``: per-strategy fields (e.g. successive-halving status)."""
    by_strategy: dict[str, list[dict[str, Any]]] = {}
    for summary in summaries:
        by_strategy.setdefault(summary["info"]["strategy"], []).append(summary)
    rows = []
    for strategy, runs in by_strategy.items():
        row: dict[str, Any] = {"strategy": strategy, "seeds": len(runs)}
        for split in ("validation", "test"):
            mean, std = _mean_std([r["metrics"].get(split, {}).get(metric) for r in runs])
            row[f"{split}_{metric}_mean"], row[f"{split}_{metric}_std"] = mean, std
        for split, name in scalar_metric_names(runs):  # every scalar metric the task reports, per split
            row[f"{split}_{name}_mean"], row[f"{split}_{name}_std"] = _mean_std([r["metrics"].get(split, {}).get(name) for r in runs])
        trainable = runs[0]["info"]["trainable_params"]
        total = runs[0]["info"]["total_params"]
        row["trainable_params"] = trainable
        row["trainable_percent"] = 100.0 * trainable / max(total, 1)
        seconds = [r["info"]["train_seconds"] + (r["info"].get("cache") or {}).get("pass_seconds", 0.0) for r in runs]
        row["train_seconds_mean"], row["train_seconds_std"] = _mean_std(seconds)
        row["peak_memory_mb"] = max(r["info"].get("peak_memory_mb") or 0 for r in runs)
        drift, _ = _mean_std([(r["metrics"].get("forgetting") or {}).get("drift") for r in runs])
        row["forgetting_drift"] = drift
        row["runs"] = [r["path"] for r in runs]
        row["failed_runs"] = sum(1 for r in runs if r["info"].get("failed"))
        row.update((extra or {}).get(strategy, {}))
        rows.append(row)
    key = f"validation_{metric}_mean"
    sign = _sign(metric)
    rows.sort(key=lambda r: (r.get("eliminated_at_rung") is None, sign * r[key] if r[key] is not None else -1e9), reverse=True)
    return rows


def _sign(metric: str) -> float:
    """+1 where higher is better; the loss (the one lower-is-better metric a run selects by) -1."""
    return -1.0 if metric == "loss" else 1.0


def name_winner(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The best validation metric; ties within one std go to the faster strategy. Says why."""
    key = f"validation_{metric}_mean"
    candidates = [r for r in rows if r[key] is not None and r.get("eliminated_at_rung") is None]
    # A strategy whose every run collapsed to the majority class cannot win.
    candidates = [r for r in candidates if r.get("failed_runs", 0) < r["seeds"]] or candidates
    if not candidates:  # e.g. a validation set on which the metric is undefined
        return {"strategy": None, "reason": f"no strategy has a defined validation {metric}"}
    sign = _sign(metric)
    top = max(candidates, key=lambda r: sign * r[key])
    close = [r for r in candidates if sign * r[key] >= sign * top[key] - max(top[f"validation_{metric}_std"] or 0.0, 1e-9)]
    winner = min(close, key=lambda r: r["train_seconds_mean"]) if len(close) > 1 else top
    reason = f"{winner['strategy']}: {metric} {winner[key]:.3f} ± {winner[f'validation_{metric}_std'] or 0:.3f}"
    trade = []
    for other in candidates:
        if other is winner:
            continue
        speed = other["train_seconds_mean"] / max(winner["train_seconds_mean"], 1e-9)
        if speed >= 1.2:
            trade.append(f"{speed:.1f}× faster than {other['strategy']}")
        elif speed <= 1 / 1.2:
            trade.append(f"{1 / speed:.1f}× slower than {other['strategy']}")
    if winner is not top:
        reason += f" (within one std of {top['strategy']}'s {top[key]:.3f}, and faster)"
    if trade:
        reason += ", " + ", ".join(trade[:3])
    reason += f"; trains {winner['trainable_percent']:.1f}% of the parameters"
    return {"strategy": winner["strategy"], "reason": reason}


CSV_COLUMNS = [
    "strategy", "seeds", "validation_{m}_mean", "validation_{m}_std", "test_{m}_mean", "test_{m}_std",
    "trainable_params", "trainable_percent", "train_seconds_mean", "train_seconds_std",
    "peak_memory_mb", "forgetting_drift", "eliminated_at_rung",
]


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every per-split metric column the rows carry (``validation_accuracy_mean``, ...)."""
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key.startswith(("validation_", "test_")) and key.endswith(("_mean", "_std")):
                columns[key] = None
    return list(columns)


def write_results(rows: list[dict[str, Any]], winner: dict[str, Any], metric: str, folder: Path, meta: dict[str, Any]) -> None:
    columns = [c.format(m=metric) for c in CSV_COLUMNS]
    columns += [c for c in metric_columns(rows) if c not in columns]
    with (folder / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*columns, "runs"], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**{c: row.get(c) for c in columns}, "runs": ";".join(row["runs"])})
    payload = {**meta, "metric": metric, "winner": winner, "results": rows}
    (folder / "results.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
