"""Transfer-learning strategies. Importing this package registers each of them."""

from thawkit.errors import ConfigError
from thawkit.strategies import adalora, dora, fewshot, frozen, full, gradual, ia3, llrd, lora, partial, prompt  # noqa: F401  (registration)
from thawkit.strategies.base import Strategy, StrategyConfig, TrainablePlan, register_strategy, registered_strategies


def available_strategies() -> list[str]:
    return sorted(registered_strategies())


def strategies_in_display_order() -> list[str]:
    """Widest frozen-layer cache first: the order of tables, reports and compare's jobs."""
    table = registered_strategies()
    return sorted(table, key=lambda name: (table[name].order, name))


def get_strategy_class(name: str) -> type[Strategy]:
    try:
        return registered_strategies()[name]
    except KeyError:
        raise ConfigError(f"unknown strategy {name!r}; fix: choose one of: {', '.join(available_strategies())}") from None


__all__ = ["Strategy", "StrategyConfig", "TrainablePlan", "available_strategies", "get_strategy_class", "register_strategy",
           "registered_strategies", "strategies_in_display_order"]
