"""The two registries, in one place for users: strategies (``thawkit.strategies``) and tasks
(``thawkit.tasks``). Each lives in its own package; registering is a decorator in the new file."""

from __future__ import annotations

from thawkit.strategies import available_strategies, get_strategy_class, register_strategy
from thawkit.tasks import available_tasks, get_task, register_task

__all__ = ["available_strategies", "available_tasks", "get_strategy_class", "get_task", "register_strategy", "register_task"]
