"""thawkit: adapt pretrained transformer encoders to your labeled data with the right strategy."""

from __future__ import annotations

import os

# transformers (5.2x) swaps in kernels downloaded from the Hub by default when the `kernels` package is
# installed (it depends on it): thawkit runs the stock PyTorch modules, which its cache surgery, its
# exactness self-checks and its bitwise tests rely on, and never reaches for the Hub unasked.
# USE_HUB_KERNELS=YES in the environment turns them back on.
os.environ.setdefault("USE_HUB_KERNELS", "NO")

from thawkit.version import __version__  # noqa: E402

from thawkit.api import dapt, distill, drift, load, lr_find, plan, prompt, push, select, train, update
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
    "select",
    "push",
    "drift",
    "update",
    "prompt",
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
