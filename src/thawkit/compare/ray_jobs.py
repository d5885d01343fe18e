"""A comparison on Ray: every strategy x seed job a Ray task, or a Ray Tune trial under the ASHA
scheduler (--successive-halving). The frozen-layer passes are computed once, by one task, and
reach every job through Ray's object store; run folders written on another node come back to the
driver, so results, report and run folders are those of the local path."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from thawkit.config import CompareConfig, make_config
from thawkit.engine.programs.ray_cluster import connect_ray, must_ship, pack_folder, unpack_folder

log = logging.getLogger("thawkit")

# What does not change the frozen-layer passes a job reads: one warm-up per distinct rest.
_PER_JOB = ("seed", "out", "resume", "finished", "progress", "time_limit_seconds", "sources")


def _resources(cfg: CompareConfig) -> dict[str, float]:
    return {"num_cpus": cfg.ray_cpus, "num_gpus": cfg.ray_gpus}


def _threads(values: dict[str, Any]) -> int:
    return max(1, int(values.get("ray_cpus") or 1))


def warm_up(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The cache entries every job will read, computed once (jobs that differ only in seed or
    output share them; a gradual run's pass serves a later partial run's boundaries)."""
    import torch

    from thawkit.compare.jobs import plan_job
    from thawkit.engine.programs.cache_shipping import warm_cache
    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(_threads(jobs[0]))
    distinct: dict[str, dict[str, Any]] = {}
    for job in jobs:
        rest = {k: v for k, v in job.items() if k not in _PER_JOB}  # strategy options stay: partial's k moves the boundary
        distinct.setdefault(json.dumps(rest, sort_keys=True, default=str),
                            {k: v for k, v in job.items() if k not in ("out", "progress", "finished", "resume")})
    bundles: dict[str, dict[str, Any]] = {}
    for values in distinct.values():
        bundles.update(warm_cache(plan_job(values, "warm-cache")))
    return bundles


def _task(job: dict[str, Any], bundles: dict[str, dict[str, Any]], driver_node: str) -> tuple[str, bytes | None]:
    """One job on a Ray worker: install the shipped cache, train, hand the run folder back if the
    driver cannot read this node's files."""
    from thawkit.compare.jobs import job_values, train_job
    from thawkit.engine.programs.cache_shipping import install_cache

    install_cache(make_config(job_values(job)), bundles)
    path = train_job(job, _threads(job))
    return path, pack_folder(Path(path)) if must_ship(driver_node) else None


def run_tasks(jobs: list[dict[str, Any]], cfg: CompareConfig) -> list[str]:
    """Every job a Ray task with its declared resources; returns the run folders, in job order."""
    ray = connect_ray(cfg.ray_address)
    driver = ray.get_runtime_context().get_node_id()
    resources = _resources(cfg)
    warm = ray.remote(**resources)(warm_up).remote(jobs)  # a task: the pass runs on the cluster, once
    task = ray.remote(**resources)(_task)
    done = ray.get([task.remote(job, warm, driver) for job in jobs])  # each job waits for the warm-up
    for path, packed in done:
        if packed is not None:
            unpack_folder(packed, Path(path))
    return [path for path, _ in done]


def _trial(config: dict[str, Any], cache: list[Any], driver_node: str) -> None:
    """One Tune trial: a whole run, reporting the selection metric after every evaluation."""
    import ray
    from ray import tune

    from thawkit.compare.jobs import job_values, train_job
    from thawkit.engine.core.loop import RunHooks
    from thawkit.engine.programs.cache_shipping import install_cache

    job = config["job"]
    install_cache(make_config(job_values(job)), ray.get(cache[0]))

    def report(point: dict[str, Any]) -> None:
        value = point["value"]
        sign = -1.0 if point["metric"] == "loss" else 1.0  # the scheduler maximises "score"
        score = sign * value if isinstance(value, (int, float)) and not math.isnan(value) else -math.inf
        scalars = {k: v for k, v in point.items() if isinstance(v, (int, float, str)) or v is None}
        tune.report({**scalars, "score": score, "completed": False})

    path = Path(train_job(job, _threads(job), RunHooks(on_evaluation=report)))
    info = json.loads((path / "thawkit.json").read_text(encoding="utf-8"))
    value = json.loads((path / "metrics.json").read_text(encoding="utf-8"))["validation"].get(info["metric"])
    score = (-1.0 if info["metric"] == "loss" else 1.0) * value if isinstance(value, (int, float)) else -math.inf
    final = {"epoch": float(job["epochs"]) + 1, "metric": info["metric"], "value": value, "score": score, "completed": True}
    if must_ship(driver_node):
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(path)))
    else:
        tune.report(final)


def _recorder_class() -> type:
    from ray import tune

    class ReportRecorder(tune.Callback):
        """Every result a trial reported, in arrival order, as the scheduler saw it (on the driver)."""

        def __init__(self) -> None:
            self.results: dict[str, list[dict[str, Any]]] = {}

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
            keep = ("epoch", "score", "metric", "value", "trainable_params", "total_params", "elapsed_seconds", "completed")
            self.results.setdefault(trial.config["job"]["out"], []).append({k: result.get(k) for k in keep})

    return ReportRecorder


def asha_search(jobs: list[dict[str, Any]], cfg: CompareConfig, budget_seconds: float | None,
                storage: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any]]:
    """Successive halving as Ray Tune's ASHA: every job a trial of ``cfg.epochs``; after each
    evaluation a trial below the rung's cut-off is stopped. A budget stops the whole search.

    Returns (summaries, per-strategy extra fields, facts about the search). A strategy with a
    completed trial is summarised by its completed runs; one whose every trial was stopped, by
    the last evaluation each trial reported (no run folder: the trial was stopped mid-run)."""
    import os

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from thawkit.compare.results import load_run_summary

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # thawkit writes its own results
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no experiment box on the console; verbose=0 is silent

    ray = connect_ray(cfg.ray_address)
    driver = ray.get_runtime_context().get_node_id()
    warm = ray.remote(**_resources(cfg))(warm_up).remote(jobs)
    # Rungs at 1, 2, 4, ... epochs; the final report (epoch = epochs + 1) lies past the last rung,
    # so ASHA never stops a trial that has finished training but not yet written its folder.
    grace = min(1.0, float(cfg.epochs))
    scheduler = ASHAScheduler(time_attr="epoch", max_t=float(cfg.epochs) + 1, grace_period=grace, reduction_factor=2)
    trainable = tune.with_resources(tune.with_parameters(_trial, cache=[warm], driver_node=driver),
                                    {"cpu": cfg.ray_cpus, "gpu": cfg.ray_gpus})
    recorder = _recorder_class()()  # a tune.Callback; the class is made once Ray is imported
    tuner = tune.Tuner(
        trainable,
        param_space={"job": tune.grid_search(jobs)},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, time_budget_s=budget_seconds,
                                    reuse_actors=False, trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=tune.RunConfig(name="asha", storage_path=str(storage.absolute()), verbose=0, callbacks=[recorder]),
    )
    grid = tuner.fit()
    by_out: dict[str, Any] = {}
    for result in grid:
        if result.error is not None:  # a failed trial is a failure, not an elimination
            shutil.rmtree(storage, ignore_errors=True)
            raise result.error
        by_out[result.config["job"]["out"]] = result
    reports = {out: recorder.results.get(result.config["job"]["out"], []) for out, result in by_out.items()}
    from thawkit.compare.results import candidate_name, model_labels

    models = list(dict.fromkeys(job.get("model") for job in jobs))
    labels = model_labels([m for m in models if m is not None])

    def name_of(job: dict[str, Any]) -> str:  # the job's row: its strategy, or model and strategy
        return candidate_name((job.get("model"), job["strategy"]), labels, len(models) > 1)

    completed: dict[str, list[dict[str, Any]]] = {}
    stopped: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        out = Path(job["out"])
        result = by_out.get(job["out"])
        if result is not None and result.checkpoint is not None:  # written on another node: shipped back
            with result.checkpoint.as_directory() as shipped:
                unpack_folder(pack_folder(Path(shipped)), out)
        if (out / "thawkit.json").exists():
            completed.setdefault(name_of(job), []).append(load_run_summary(out))
            continue
        _discard_unfinished(out)
        stopped.setdefault(name_of(job), []).append(_stopped_summary(job, reports[job["out"]]))
    summaries: list[dict[str, Any]] = []
    extra: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(name_of(job) for job in jobs):
        if name in completed:
            summaries += completed[name]
            extra[name] = {"eliminated_at_rung": None, "rung_epochs": float(cfg.epochs),
                           "stopped_trials": len(stopped.get(name, []))}
        else:
            runs = stopped[name]
            summaries += runs
            reached = max((r["info"]["epochs_reached"] for r in runs), default=0.0)
            rung = int(math.log2(reached / grace)) if reached >= grace else 0
            extra[name] = {"eliminated_at_rung": rung, "rung_epochs": reached, "stopped_trials": len(runs)}
    facts = {"scheduler": "ASHA (Ray Tune)", "grace_period_epochs": grace, "reduction_factor": 2,
             "max_epochs": float(cfg.epochs), "trials": len(jobs),
             "completed_trials": sum(len(v) for v in completed.values()),
             "stopped_trials": sum(len(v) for v in stopped.values()),
             # What each trial told the scheduler, in the order the trials started: [epoch, score].
             "trial_reports": [{"name": name_of(job), "strategy": job["strategy"], "seed": job["seed"],
                                "reports": [[r["epoch"], r["score"]] for r in reports.get(job["out"], [])]} for job in jobs]}
    shutil.rmtree(storage, ignore_errors=True)
    return summaries, extra, facts


def _discard_unfinished(out: Path) -> None:
    from thawkit.rundir import partial_dir_for

    shutil.rmtree(partial_dir_for(out), ignore_errors=True)


def _stopped_summary(job: dict[str, Any], reports: list[dict[str, Any]]) -> dict[str, Any]:
    """What a stopped trial leaves: its learning curve as reported, in the shape of a run summary."""
    points = [r for r in reports if not r.get("completed")]
    last = points[-1] if points else {}
    metric = last.get("metric")
    history = [{"epoch": p["epoch"], "validation": {p["metric"]: p["value"]}, "elapsed_seconds": p.get("elapsed_seconds"),
                "trainable_params": p.get("trainable_params"), "trainable_blocks": []}
               for p in points]
    info = {"strategy": job["strategy"], "seed": job["seed"], "metric": metric, "config": {"model": job.get("model")},
            "trainable_params": last.get("trainable_params") or 0, "total_params": last.get("total_params") or 0,
            "train_seconds": float(last.get("elapsed_seconds") or 0.0), "epochs_reached": float(last.get("epoch") or 0.0),
            "stopped_by": "ASHA" if points else "the budget, before its first evaluation"}
    return {"path": None, "info": info, "metrics": {"validation": {metric: last.get("value")} if metric else {}},
            "history": history}
