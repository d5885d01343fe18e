"""The task interface: what differs between sequence classification, NER, QA and similarity.

A task reads and validates its data, builds its model, tokenizes, collates, scores, saves, serves,
exports and advises, through the roles it composes (``thawkit.tasks.roles``); the training
sequence itself (strategy, guards, cache, Trainer, forgetting, merge check, run writing) lives
once, in ``thawkit.engine.core.pipeline``, and applies to every task by construction.

A task registers itself in its own module with ``@register_task("name")``; importing
``thawkit.tasks`` loads every built-in task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, TypeVar

from thawkit.plugins import Registry
from thawkit.tasks.roles import AdviceRole, DataRole, ExportRole, ModelRole, ScoringRole, ServingRole, UpdateRole
from thawkit.rundir import METRICS_FILE, read_history

if TYPE_CHECKING:
    pass

_TASKS = Registry("task", ("run_type", "default_metric", "load_data", "build_model", "encode", "load_run"))

T = TypeVar("T")


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: ``@register_task("ner")`` makes the task available as ``--task ner``."""
    return _TASKS.register(name)


def registered_tasks() -> dict[str, type["Task"]]:
    return _TASKS.classes


@dataclass
class TaskData:
    """A task's splits (task-specific rows), label names, and facts for ``thawkit.json``.

    ``scratch`` holds what a task computes while encoding and needs again when scoring (e.g. the
    QA windows' offsets per split).
    """

    train: Any
    validation: Any
    test: Any | None
    labels: list[str] = field(default_factory=list)
    multi_label: bool = False
    validation_source: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Any:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


class Task(DataRole, ModelRole, ScoringRole, ServingRole, ExportRole, AdviceRole, UpdateRole):
    """A task composes the small roles in ``thawkit.tasks.roles`` (data, model, scoring, serving,
    export, advice, update); each has defaults most tasks share; a task overrides what differs."""

    name: ClassVar[str]
    run_type: ClassVar[str]  # recorded as thawkit.json "task" (e.g. "token-classification")


class RunBase:
    """A trained run of any task: its model, tokenizer, facts and metrics; ``predict`` per task."""

    generates = False  # predict() writes text and takes generation options (max_new_tokens, num_beams, ...)

    def __init__(self, model: Any, tokenizer: Any, info: dict[str, Any], path: Path | None = None,
                 labels: list[str] | None = None, multi_label: bool = False) -> None:
        self.model, self.tokenizer, self.info, self.path = model, tokenizer, info, path
        self.labels: list[str] = list(labels or [])
        self.multi_label = multi_label

    @property
    def max_length(self) -> int:
        """The length the run was trained and evaluated at (its plan resolved it)."""
        return int(self.info["config"]["max_length"])

    @property
    def metrics(self) -> dict[str, Any]:
        if self.path is None or not (self.path / METRICS_FILE).exists():
            return {}
        return json.loads((self.path / METRICS_FILE).read_text(encoding="utf-8"))

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per evaluation during training (the learning curve)."""
        records = read_history(self.path) if self.path is not None else []
        return [r for r in records if "type" not in r]

    @property
    def forgetting(self) -> dict[str, Any] | None:
        return self.metrics.get("forgetting")

    def headline(self) -> str:
        """One line on what the run reached, for the CLI summary."""
        validation = self.metrics.get("validation", {})
        shown = ", ".join(f"{k} {v:.4f}" for k, v in validation.items() if isinstance(v, float) and k != "loss")
        return f"{self.info.get('task')} {self.info.get('strategy')}: validation {shown}"

    def predict(self, texts: list[str] | str, text_pairs: Any = None, batch_size: int = 32) -> list[dict[str, Any]]:
        raise NotImplementedError

    def prediction_inputs(self, path: Path, text_col: str | None, text_pair_col: str | None) -> tuple[list[Any], list[str] | None]:
        """The inputs of ``predict --file`` (texts, and pairs for a pair model)."""
        from thawkit.data.classification import read_texts_for_prediction

        return read_texts_for_prediction(path, text_col, text_pair_col)

    def evaluate(self, data: str | Path, **columns: Any) -> dict[str, Any]:
        raise NotImplementedError

    def prediction_reference(self) -> Any:
        """Counts per label of the run's predictions on its validation split (the server's drift
        reference), or None where the run predicts no labels."""
        return None

    def predicted_label_ids(self, answers: list[Any]) -> list[int]:
        """The label ids ``predict``'s ``answers`` name (each label of a multi-label answer)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path}, task={self.info.get('task')}, strategy={self.info.get('strategy')})"
