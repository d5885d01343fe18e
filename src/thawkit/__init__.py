"""thawkit: adapt pretrained transformer encoders to your labeled data with the right strategy."""

from __future__ import annotations

__version__ = "0.1.0"

from thawkit.api import load, train
from thawkit.config import TrainConfig
from thawkit.errors import ConfigError, DataError, RunDirError, ThawkitError
from thawkit.registry import available_strategies, register_strategy
from thawkit.run import Run

__all__ = [
    "__version__",
    "train",
    "load",
    "Run",
    "TrainConfig",
    "ThawkitError",
    "DataError",
    "ConfigError",
    "RunDirError",
    "available_strategies",
    "register_strategy",
]
