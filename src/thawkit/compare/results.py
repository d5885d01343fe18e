"""Aggregate finished runs into a results table (mean ± std over seeds) and name the winner."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

from thawkit.rundir import read_history, read_run_files


def load_run_summary(path: Path) -> dict[str, Any]:
    """A finished run's summary; a job a guard stopped (no run folder) as a failed row with no metric."""
    from thawkit.compare.jobs import failed_job_file

    failed = failed_job_file(path)
    if not Path(path).exists() and failed.exists():
        facts = json.loads(failed.read_text(encoding="utf-8"))
        info = {**facts, "metric": None, "trainable_params": 0, "total_params": 0, "train_seconds": 0.0}
        return {"path": None, "info": info, "metrics": {"validation": {}}, "history": []}
    run, info, _labels = read_run_files(path)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return {"path": str(run), "info": info, "metrics": metrics, "history": read_history(run)}


def model_labels(models: list[str]) -> dict[str, str]:
    """Short names for models: an alias as given, a folder or hub id by its last part (the whole
    id where two would share one). Used in folder names, tables and the report."""
    short = {m: Path(m).name or m for m in models}
    if len(set(short.values())) < len(short):
        short = {m: m.strip("/").replace("/", "_") for m in models}
    return short


def candidate_name(candidate: tuple[str | None, str], labels: dict[str, str], multi: bool) -> str:
    """One row of a comparison: the strategy, or 'model · strategy' when several models are compared."""
    model, strategy = candidate
    return f"{labels[model]} · {strategy}" if multi and model is not None else strategy


def label_summaries(summaries: list[dict[str, Any]], multi: bool | None = None,
                    labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Each run summary gets its ``model`` (as configured) and its row ``name``; ``multi`` (default:
    the runs span more than one model) names rows by model and strategy; ``labels``: the models'
    short names (default: made from these runs' models)."""
    models = [s["info"].get("config", {}).get("model") for s in summaries]
    distinct = list(dict.fromkeys(m for m in models if m is not None))
    labels = {**model_labels(distinct), **(labels or {})}
    multi = len(distinct) > 1 if multi is None else multi
    for summary, model in zip(summaries, models):
        summary["model"] = labels.get(model) if model is not None else None
        summary["name"] = candidate_name((model, summary["info"]["strategy"]), labels, multi)
    return summaries


def folder_megabytes(path: str | None) -> float | None:
    """What a run folder holds on disk (the model or adapter, tokenizer, history)."""
    if path is None or not Path(path).is_dir():
        return None
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


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
    """One row per strategy (per model and strategy when several models are compared); ``extra``:
    per-row fields by row name (e.g. successive-halving status)."""
    if any("name" not in s for s in summaries):
        label_summaries(summaries)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for summary in summaries:
        by_name.setdefault(summary["name"], []).append(summary)
    rows = []
    for name, runs in by_name.items():
        row: dict[str, Any] = {"name": name, "strategy": runs[0]["info"]["strategy"], "model": runs[0]["model"], "seeds": len(runs)}
        for split in ("validation", "test"):
            mean, std = _mean_std([r["metrics"].get(split, {}).get(metric) for r in runs])
            row[f"{split}_{metric}_mean"], row[f"{split}_{metric}_std"] = mean, std
        row[f"validation_{metric}_ci"] = bootstrap_interval([r["metrics"].get("validation") or {} for r in runs], metric)
        for split, scalar in scalar_metric_names(runs):  # every scalar metric the task reports, per split
            row[f"{split}_{scalar}_mean"], row[f"{split}_{scalar}_std"] = _mean_std([r["metrics"].get(split, {}).get(scalar) for r in runs])
        trainable = runs[0]["info"]["trainable_params"]
        total = runs[0]["info"]["total_params"]
        row["trainable_params"] = trainable
        row["failed_reason"] = next((r["info"]["failed"] for r in runs if r["path"] is None and r["info"].get("failed")), None)
        row["total_params"] = total
        row["trainable_percent"] = 100.0 * trainable / max(total, 1)
        row["size_on_disk_mb"] = folder_megabytes(runs[0]["path"])
        seconds = [r["info"]["train_seconds"] + (r["info"].get("cache") or {}).get("pass_seconds", 0.0) for r in runs]
        row["train_seconds_mean"], row["train_seconds_std"] = _mean_std(seconds)
        row["peak_memory_mb"] = max(r["info"].get("peak_memory_mb") or 0 for r in runs)
        drift, _ = _mean_std([(r["metrics"].get("forgetting") or {}).get("drift") for r in runs])
        row["forgetting_drift"] = drift
        row["runs"] = [r["path"] for r in runs]
        row["failed_runs"] = sum(1 for r in runs if r["info"].get("failed"))
        row["num_validation_examples"] = runs[0]["info"].get("num_validation_examples")
        row.update((extra or {}).get(name, {}))
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
        return {"strategy": None, "model": None, "name": None, "reason": f"no strategy has a defined validation {metric}"}
    sign = _sign(metric)
    top = max(candidates, key=lambda r: sign * r[key])
    close = [r for r in candidates if sign * r[key] >= sign * top[key] - max(top[f"validation_{metric}_std"] or 0.0, 1e-9)]
    winner = min(close, key=lambda r: r["train_seconds_mean"]) if len(close) > 1 else top
    spread = f" ± {winner[f'validation_{metric}_std'] or 0:.3f}" if winner["seeds"] > 1 else " (1 seed)"
    reason = f"{winner['name']}: {metric} {winner[key]:.3f}{spread}"
    trade = []
    for other in candidates:
        if other is winner:
            continue
        speed = other["train_seconds_mean"] / max(winner["train_seconds_mean"], 1e-9)
        if speed >= 1.2:
            trade.append(f"{speed:.1f}× faster than {other['name']}")
        elif speed <= 1 / 1.2:
            trade.append(f"{1 / speed:.1f}× slower than {other['name']}")
    if winner is not top:
        reason += f" (within one std of {top['name']}'s {top[key]:.3f}, and faster)"
    if trade:
        reason += ", " + ", ".join(trade[:3])
    reason += f"; trains {winner['trainable_percent']:.1f}% of the parameters"
    runner_up = max((r for r in candidates if r is not winner), key=lambda r: sign * r[key], default=None)
    resolution = resolvable_margin(winner[key], winner.get("num_validation_examples"), metric)
    interval = winner.get(f"validation_{metric}_ci")
    if runner_up is not None and interval is not None:  # the bootstrap interval of the winner's own examples
        uncertain = interval[0] <= runner_up[key] <= interval[1]
        if uncertain:
            reason += (f". Uncertain: {runner_up['name']}'s {runner_up[key]:.3f} is inside {winner['name']}'s 95% bootstrap "
                       f"interval [{interval[0]:.3f}, {interval[1]:.3f}] on {winner['num_validation_examples']} validation "
                       "examples; a larger validation set or more --seeds would tell them apart")
        return {"strategy": winner["strategy"], "model": winner["model"], "name": winner["name"], "reason": reason,
                "uncertain": uncertain, "resolvable_margin": resolution, "interval": interval}
    uncertain = runner_up is not None and resolution is not None and abs(winner[key] - runner_up[key]) < resolution
    if uncertain:
        reason += (f". Uncertain: the margin over {runner_up['name']} ({abs(winner[key] - runner_up[key]):.3f}) is inside the "
                   f"{resolution:.3f} that {winner['num_validation_examples']} validation examples can resolve (95%, binomial); "
                   "a larger validation set or more --seeds would tell them apart")
    return {"strategy": winner["strategy"], "model": winner["model"], "name": winner["name"], "reason": reason,
            "uncertain": uncertain, "resolvable_margin": resolution}


BOOTSTRAP_DRAWS = 2000
_CONFUSION_METRICS = ("accuracy", "macro_f1", "weighted_f1", "micro_f1")


def _confusion(metrics: dict[str, Any]) -> Any:
    """A single-label run's validation confusion matrix (rows gold, columns predicted), or None."""
    import numpy as np

    confusion = metrics.get("confusion_matrix") or {}
    if not str(confusion.get("format", "")).startswith("rows = gold"):
        return None
    matrix = np.asarray(confusion.get("matrix") or [], dtype=float)
    return matrix if matrix.ndim == 2 and matrix.sum() > 0 else None


def _scores(counts: Any, metric: str) -> Any:
    """``metric`` of each confusion matrix in ``counts`` (draws x k x k), as scikit-learn computes
    it (macro over the classes present in the gold labels or the predictions)."""
    import numpy as np

    tp = np.diagonal(counts, axis1=1, axis2=2)
    gold, predicted = counts.sum(axis=2), counts.sum(axis=1)
    total = counts.sum(axis=(1, 2))
    if metric in ("accuracy", "micro_f1"):
        return tp.sum(axis=1) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.nan_to_num(2 * tp / (gold + predicted))
    if metric == "weighted_f1":
        return (f1 * gold).sum(axis=1) / total
    present = (gold + predicted) > 0
    return (f1 * present).sum(axis=1) / present.sum(axis=1)


def bootstrap_interval(runs_metrics: list[dict[str, Any]], metric: str, draws: int = BOOTSTRAP_DRAWS,
                       seed: int = 0) -> tuple[float, float] | None:
    """95% bootstrap interval of the seed-averaged validation ``metric``: the validation examples
    resampled with replacement (a multinomial draw over each run's confusion-matrix cells, which is
    exactly resampling its examples), per run, averaged over runs per draw. None where no run has a
    single-label confusion matrix or the metric is not computed from one."""
    import numpy as np

    matrices = [m for m in (_confusion(r) for r in runs_metrics) if m is not None]
    if metric not in _CONFUSION_METRICS or not matrices or len(matrices) < len(runs_metrics):
        return None
    rng = np.random.default_rng(seed)
    per_run = []
    for matrix in matrices:
        n, k = int(matrix.sum()), matrix.shape[0]
        counts = rng.multinomial(n, matrix.ravel() / n, size=draws).reshape(draws, k, k)
        per_run.append(_scores(counts, metric))
    averaged = np.mean(per_run, axis=0)
    low, high = np.percentile(averaged, [2.5, 97.5])
    return float(low), float(high)


def resolvable_margin(value: float | None, examples: int | None, metric: str) -> float | None:
    """The smallest difference between two strategies' scores of a 0-1 metric that ``examples``
    validation examples resolve at 95%: 1.96 x sqrt(2 p (1 - p) / n), the binomial standard error of
    a difference of two proportions (exact for accuracy, a guide for F1-like scores). None for a
    loss or a metric off the 0-1 scale, or without a count."""
    if value is None or not examples or metric == "loss" or not 0.0 <= value <= 1.0:
        return None
    p = min(max(value, 1.0 / examples), 1.0 - 1.0 / examples)
    return 1.96 * math.sqrt(2 * p * (1 - p) / examples)


def model_size_advice(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The 'wrong model size' check: the smallest model whose best row is within one point of the
    best row of any model. One point: 0.01 on a 0-1 metric, 1 on a 0-100 one, 1 % of a loss."""
    key = f"validation_{metric}_mean"
    usable = [r for r in rows if r.get(key) is not None and r.get("eliminated_at_rung") is None
              and r.get("failed_runs", 0) < r["seeds"] and r.get("model") is not None]
    best: dict[str, dict[str, Any]] = {}
    sign = _sign(metric)
    for row in usable:
        if row["model"] not in best or sign * row[key] > sign * best[row["model"]][key]:
            best[row["model"]] = row
    collapsed = sorted({r["model"] for r in rows if r.get("model") is not None} - set(best))
    if best and collapsed and len(best) < 2:  # a model whose every run failed is no rival
        only = next(iter(best.values()))
        return {"rule": "wrong-model-size", "verdict": "only one model learned", "model": only["model"], "best_model": only["model"],
                "point": None, "per_model": [{"model": only["model"], "total_params": only["total_params"], "best": only["name"],
                                              f"validation_{metric}": only[key]}],
                "reason": f"every run of {', '.join(collapsed)} failed (one class for everything, or no metric); "
                          f"{only['model']} reached {only[key]:.3f} with {only['strategy']}"}
    if len(best) < 2:
        return None
    top = max(best.values(), key=lambda r: sign * r[key])
    point = abs(top[key]) * 0.01 if metric == "loss" else (0.01 if all(abs(r[key]) <= 1 for r in best.values()) else 1.0)
    enough = [r for r in best.values() if sign * r[key] >= sign * top[key] - point]
    pick = min(enough, key=lambda r: r["total_params"])
    per_model = [{"model": m, "total_params": r["total_params"], "best": r["name"], f"validation_{metric}": r[key]}
                 for m, r in sorted(best.items(), key=lambda kv: kv[1]["total_params"])]

    def sized(row: dict[str, Any]) -> str:
        return f"{row['model']} ({row['total_params'] / 1e6:.1f}M parameters, {row[key]:.3f} with {row['strategy']})"

    if pick is not top:  # the smallest within one point is smaller than the best
        verdict = "wrong model size"
        reason = (f"{sized(pick)} is within one point of {sized(top)}: {top['total_params'] / max(pick['total_params'], 1):.1f}x "
                  f"fewer parameters for {abs(top[key] - pick[key]):.3f} {metric}; prefer the smaller model unless that gap matters")
    elif any(r["total_params"] > top["total_params"] for r in best.values()):
        verdict = "larger models do not pay"
        reason = f"{sized(top)} beats the larger " + ", ".join(
            sized(r) for r in best.values() if r["total_params"] > top["total_params"])
    else:
        verdict = "the size pays"
        reason = f"{sized(top)} leads every smaller model by more than one point"
    return {"rule": "wrong-model-size", "verdict": verdict, "model": pick["model"], "best_model": top["model"],
            "point": point, "reason": reason, "per_model": per_model}


CSV_COLUMNS = [
    "name", "model", "strategy", "seeds", "validation_{m}_mean", "validation_{m}_std", "test_{m}_mean", "test_{m}_std",
    "trainable_params", "total_params", "trainable_percent", "size_on_disk_mb", "train_seconds_mean", "train_seconds_std",
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
