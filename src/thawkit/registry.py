"""The strategy registry: the CLI, the config validator and (later) the advisor and compare runner
all read this one table, so adding a strategy touches its own module and nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

from thawkit.errors import ConfigError

if TYPE_CHECKING:
    from thawkit.strategies.base import Strategy

_STRATEGIES: dict[str, type["Strategy"]] = {}

S = TypeVar("S")


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator: ``@register_strategy("llrd")`` makes the strategy available by name."""

    def decorator(cls: S) -> S:
        if name in _STRATEGIES and _STRATEGIES[name] is not cls:
            raise RuntimeError(f"strategy {name!r} is registered twice")
        for attr in ("Config", "plan", "default_lr"):
            if not hasattr(cls, attr):
                raise TypeError(f"strategy {name!r} lacks {attr!r}")
        cls.name = name  # type: ignore[attr-defined]
        _STRATEGIES[name] = cls  # type: ignore[assignment]
        return cls

    return decorator


def _ensure_loaded() -> None:
    # Importing the package runs every strategy module's @register_strategy.
    import thawkit.strategies  # noqa: F401


def available_strategies() -> list[str]:
    _ensure_loaded()
    return sorted(_STRATEGIES)


def get_strategy_class(name: str) -> type["Strategy"]:
    _ensure_loaded()
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown strategy {name!r}; choose one of: {', '.join(sorted(_STRATEGIES))}"
        ) from None
