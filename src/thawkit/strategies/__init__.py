"""Transfer-learning strategies. Importing this package registers each of them."""

from thawkit.strategies import frozen, full, gradual, llrd, lora, partial  # noqa: F401  (registration)
from thawkit.strategies.base import Strategy, StrategyConfig, TrainablePlan

__all__ = ["Strategy", "StrategyConfig", "TrainablePlan"]
