"""Tasks: sequence classification, token classification (NER), extractive QA, sentence similarity, generation.

Built-in tasks are imported when first asked for (their modules pull in torch, numpy and
scikit-learn; `thawkit --help` must not); plugins register with ``@register_task`` as before.
"""

import importlib
from pathlib import Path
from typing import Any

from thawkit.errors import ConfigError, RunDirError, ThawkitError
from thawkit.rundir import DAMAGED_FIX, RUN_FILE, read_run_files
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


# Run types whose served work is an answer written token by token (many small forward passes): known
# before torch loads, which fixes OpenMP's thread wait policy for the server. One source of truth with
# the tasks' ``serves_token_by_token`` (a test checks the two agree).
_TOKEN_BY_TOKEN_RUN_TYPES = frozenset({"text-generation"})


def serves_token_by_token(path: str | Path) -> bool:
    """Whether a finished run's served answers are written token by token: its thawkit.json's task,
    read without loading torch (``read_run_files``' weight checks load it); False for a folder that is
    not a readable run (loading it reports why)."""
    import json

    try:
        return json.loads((Path(path) / RUN_FILE).read_text(encoding="utf-8")).get("task") in _TOKEN_BY_TOKEN_RUN_TYPES
    except (OSError, ValueError, AttributeError):
        return False


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


def task_only_settings() -> dict[str, tuple[str, str]]:
    """config field -> (flag, the task that owns it), over every task."""
    return {name: (flag, cls.name) for cls in _load().values() for flag, name in cls.own_settings}


def open_run(path: str | Path) -> tuple[Task, Path, dict[str, Any], dict[str, Any]]:
    """(task, folder, thawkit.json, labels.json) of a finished run, every file checked (rundir's generic
    checks, then the task's own) before anything is loaded."""
    run, info, labels = read_run_files(path)
    try:
        task = task_for_run(info["task"])
    except ConfigError as exc:
        raise RunDirError(f"{run / RUN_FILE}: {exc}") from None
    task.check_run(run, info, labels)
    return task, run, info, labels


def load_checked(task: Task, run: Path, info: dict[str, Any], labels: dict[str, Any]) -> RunBase:
    """``task.load_run`` on a folder ``open_run`` checked: what the checks cannot see (a tokenizer.json
    that is JSON but not a tokenizer, an ONNX graph cut short) is still one line naming the folder."""
    try:
        return task.load_run(run, info, labels)
    except ThawkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any library's complaint about the folder's files
        reason = " ".join(str(exc).split())[:300]
        raise RunDirError(f"{run}: cannot be loaded ({type(exc).__name__}: {reason}); {DAMAGED_FIX}") from exc


__all__ = ["load_checked", "open_run", "RunBase", "Task", "TaskData", "available_tasks", "get_task", "register_task", "serves_token_by_token",
           "task_for_run", "task_only_settings"]
