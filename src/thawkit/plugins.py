"""Self-registration for plugins (strategies, tasks): one decorator per kind, checked at import time."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

C = TypeVar("C")


class Registry:
    """Classes by name; ``register(name)`` is a class decorator that checks the required attributes."""

    def __init__(self, kind: str, required: tuple[str, ...]) -> None:
        self.kind, self.required = kind, required
        self.classes: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[C], C]:
        def decorator(cls: C) -> C:
            if name in self.classes and self.classes[name] is not cls:
                raise RuntimeError(f"{self.kind} {name!r} is registered twice")
            missing = [attr for attr in self.required if not hasattr(cls, attr)]
            if missing:
                raise TypeError(f"{self.kind} {name!r} lacks {', '.join(missing)}")
            cls.name = name  # type: ignore[attr-defined]
            self.classes[name] = cls
            return cls

        return decorator
