"""One comparison job: a training run in this process, wherever the scheduler put the process
(a process pool, a Ray task, a Ray Tune trial)."""

from __future__ import annotations

import os
from typing import Any

from thawkit.config import make_config


def train_job(values: dict[str, Any], threads: int | None = None, hooks: Any = None) -> str:
    """One training run (importable at top level, so process pools and Ray can call it);
    ``hooks``: what a scheduler adds to its loop (``thawkit.engine.loop.RunHooks``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
    if threads:
        import torch

        torch.set_num_threads(threads)
    from thawkit.engine.pipeline import run_training
    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()
    run = run_training(make_config(values), hooks=hooks)
    metric = run.info["metric"]
    value = run.metrics["validation"].get(metric)
    seconds = run.info["train_seconds"] + (run.info.get("cache") or {}).get("pass_seconds", 0.0)
    shown = f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
    print(f"  {values['strategy']:8s} seed {values['seed']}: done, val {metric} {shown} "
          f"in {seconds:.1f}s ({run.info['config']['epochs']:g} epochs)", flush=True)
    return str(run.path)
