"""Tasks: sequence classification, token classification (NER), extractive QA, sentence similarity.
Importing this package registers each of them."""

from thawkit.errors import ConfigError
from thawkit.tasks import classification, ner, qa, similarity  # noqa: F401  (registration)
from thawkit.tasks.base import RunBase, Task, TaskData, register_task, registered_tasks


def available_tasks() -> list[str]:
    return sorted(registered_tasks())


def get_task(name: str) -> Task:
    try:
        return registered_tasks()[name]()
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; fix: choose one of: {', '.join(available_tasks())}") from None


def task_for_run(run_type: str) -> Task:
    """The task that wrote a run (thawkit.json's ``task``, e.g. "token-classification")."""
    for cls in registered_tasks().values():
        if run_type in (cls.run_type, cls.name):
            return cls()
    raise ConfigError(f"this run was written by task {run_type!r}, unknown to this thawkit; fix: upgrade thawkit")


__all__ = ["RunBase", "Task", "TaskData", "available_tasks", "get_task", "register_task", "task_for_run"]
