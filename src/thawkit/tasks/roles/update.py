"""UpdateRole: what ``thawkit update`` needs of a task (continue a run on new data, new classes
allowed, with a replayed sample of what it was trained on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from thawkit.errors import ConfigError

if TYPE_CHECKING:
    from thawkit.config import TrainConfig
    from thawkit.tasks.base import RunBase, TaskData


@dataclass
class UpdateData:
    """The update's training data (new examples + replay; validation: the old and the new
    validation examples together, which select the epoch and fit the calibration), the two
    validation sets it is judged on, and the data sources the next update replays from."""

    data: "TaskData"
    old_validation: Any
    new_validation: Any
    pool: list[dict[str, Any]]  # every training source so far: {data, validation, val_fraction, split_seed}
    facts: dict[str, Any] = field(default_factory=dict)


class UpdateRole:
    name: ClassVar[str]
    supports_update: ClassVar[bool] = False

    def update_data(self, info: dict[str, Any], labels: dict[str, Any], new: "TrainConfig", replay: int | None,
                    seed: int, old_data: str | None = None) -> UpdateData:
        """New examples (``new.data``, with ``new.validation`` or a seeded split of it) plus ``replay``
        examples (None: the task's default) sampled with ``seed`` from the run's own training data
        (``old_data``: that file, when the path the run recorded is not readable here)."""
        raise ConfigError(f"thawkit update continues classification runs; this is a {self.name} run; fix: train a new run on "
                          "all the data (thawkit train --model RUN starts from its weights)")

    def old_model_for_update(self, run: "RunBase") -> Any:
        """The run's model as its training left it (a calibration baked into the output layer undone)."""
        return run.model

    def update_scores(self, run: "RunBase", frame: Any, labels: list[str]) -> dict[str, float]:
        """The run's scalar metrics on ``frame`` (rows labelled over ``labels``, which may extend the run's own)."""
        raise NotImplementedError(f"task {self.name} must define update_scores")
