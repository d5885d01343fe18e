"""One comparison job: a training run in this process, wherever the scheduler put the process
(a process pool, a Ray task, a Ray Tune trial). Every job is planned (``thawkit.planner``) where
it runs, with the comparison's sources and facts (a DAPT shared by every job)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thawkit.guards.base import GuardError

JOB_KEYS = ("sources", "facts")  # what a job carries besides its TrainConfig values
FAILED_JOB = ".failed-job.json"  # beside a job's folder: why a guard stopped it (no run folder is published)


def failed_job_file(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + FAILED_JOB)


def record_failed_job(job: dict[str, Any], reason: str) -> None:
    import json

    facts = {"strategy": job["strategy"], "seed": job["seed"], "failed": reason, "config": {"model": job.get("model")}}
    failed_job_file(job["out"]).parent.mkdir(parents=True, exist_ok=True)
    failed_job_file(job["out"]).write_text(json.dumps(facts) + "\n", encoding="utf-8")


def job_values(job: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig values of a job (without the scheduler's bookkeeping)."""
    return {k: v for k, v in job.items() if k not in (*JOB_KEYS, "finished")}


def plan_job(job: dict[str, Any], command: str = "compare") -> Any:
    from thawkit.planner import plan_run

    return plan_run(job_values(job), command, job.get("sources"), facts=job.get("facts"))


def train_job(job: dict[str, Any], threads: int | None = None, hooks: Any = None) -> str:
    """One training run (importable at top level, so process pools and Ray can call it);
    ``hooks``: what a scheduler adds to its loop (``thawkit.engine.core.loop.RunHooks``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
    if threads:
        import torch

        torch.set_num_threads(threads)
    from thawkit.engine.core.pipeline import run_training
    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()
    name = Path(job["out"]).name.rsplit("-seed", 1)[0]  # the strategy, or model-strategy
    try:
        run = run_training(plan_job(job), hooks=hooks)
    except GuardError as exc:  # a guard stopped this job (divergence, --strict): the comparison goes on without it
        record_failed_job(job, str(exc))
        print(f"  {name:8s} seed {job['seed']}: failed: {exc}", flush=True)
        return str(job["out"])
    metric = run.info["metric"]
    value = run.metrics["validation"].get(metric)
    seconds = run.info["train_seconds"] + (run.info.get("cache") or {}).get("pass_seconds", 0.0)
    shown = f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
    print(f"  {name:8s} seed {job['seed']}: done, val {metric} {shown} "
          f"in {seconds:.1f}s ({run.info['config']['epochs']:g} epochs)", flush=True)
    return str(run.path)
