"""Tasks: sequence classification, token classification (NER), extractive QA, sentence similarity, generation.

Built-in tasks are imported when first asked for (their modules pull in torch, numpy and
scikit-learn; `thawkit --help` must not); plugins register with ``@register_task`` as before.
"""

import importlib

from thawkit.errors import ConfigError
from thawkit.tasks.base import RunBase, Task, TaskData, register_task, registered_tasks

# name -> module that registers it
_BUILT_IN = {
    "classification": "thawkit.tasks.classification",
    "ner": "thawkit.tasks.ner",
    "qa": "thawkit.tasks.qa",
    "similarity": "thawkit.tasks.similarity",
    "generation": "thawkit.tasks.generation",
}


def _load(names: list[str] | None = None) -> dict[str, type[Task]]:
    for name in names if names is not None else list(_BUILT_IN):
        if name in _BUILT_IN and name not in registered_tasks():
            importlib.import_module(_BUILT_IN[name])
    return registered_tasks()


def available_tasks() -> list[str]:
    return sorted(set(_BUILT_IN) | set(registered_tasks()))


def get_task(name: str) -> Task:
    try:
        return _load([name])[name]()
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; fix: choose one of: {', '.join(available_tasks())}") from None


def task_for_run(run_type: str) -> Task:
    """The task that wrote a run (thawkit.json's ``task``, e.g. "token-classification")."""
    for cls in _load().values():
        if run_type in (cls.run_type, cls.name):
            return cls()
    raise ConfigError(f"this run was written by task {run_type!r}, unknown to this thawkit; fix: upgrade thawkit")


__all__ = ["RunBase", "Task", "TaskData", "available_tasks", "get_task", "register_task", "task_for_run"]
