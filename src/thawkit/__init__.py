"""thawkit: adapt pretrained transformer encoders to your labeled data with the right strategy."""

from __future__ import annotations

from thawkit.version import __version__  # noqa: E402

from thawkit.api import dapt, distill, load, lr_find, plan, train
from thawkit.config import TrainConfig
from thawkit.runplan import RunPlan
from thawkit.errors import ConfigError, DataError, RunDirError, ThawkitError
from thawkit.registry import available_strategies, available_tasks, register_strategy, register_task
from thawkit.tasks import RunBase

Run = RunBase  # every task's run shares this interface (predict, evaluate, metrics, history)

__all__ = [
    "__version__",
    "train",
    "plan",
    "RunPlan",
    "load",
    "lr_find",
    "dapt",
    "distill",
    "Run",
    "RunBase",
    "TrainConfig",
    "ThawkitError",
    "DataError",
    "ConfigError",
    "RunDirError",
    "available_strategies",
    "available_tasks",
    "register_strategy",
    "register_task",
]
