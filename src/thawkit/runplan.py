"""A run's plan: every setting resolved once (by ``thawkit.planner``), with where each value came from.

The engine runs what a plan says and resolves nothing itself: ``plan.config`` has no "default
later" value left (learning rate, head multiplier, epochs, max length, metric, precision, cache
dtype, split seed, output folder are all concrete), and ``plan.sources`` names, per setting, who
decided it: the command line, a config file, the measured-defaults table (with its row), the
model's limit, the task's or the strategy's default, the advisor, DAPT, a resumed run.

A plan is plain data: ``as_dict`` / ``from_dict`` round-trip it through JSON, so a Ray Train worker
or a resumed run continues with the plan it was given instead of planning again. ``thawkit.json``
stores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from thawkit.config import TrainConfig, make_config

if TYPE_CHECKING:
    from thawkit.strategies import Strategy
    from thawkit.tasks import Task, TaskData

DEFAULT = "default"  # the config field's own default (docs/config.md)
USER_SOURCES = ("command line", "config file", "argument")  # how a source names a value the user gave


@dataclass(frozen=True)
class RunPlan:
    command: str  # train, compare, distill, lr-find, warm-cache
    config: TrainConfig  # every setting resolved
    sources: Mapping[str, str]  # setting (a config field, or strategy_options.NAME) -> where its value came from
    measured: Mapping[str, Any]  # the measured-defaults row the LR came from (lr, head_lr_mult, options, source)
    facts: Mapping[str, Any] = field(default_factory=dict)  # steps taken while planning: advice, dapt
    cache_reason: str = ""  # why the frozen-layer cache is off, when it is
    # Loaded once while planning and handed to the engine (not serialized: a worker reloads it).
    loaded: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def task(self) -> "Task":
        from thawkit.tasks import get_task

        return get_task(self.config.task)

    def data(self) -> "TaskData":
        """The task's data, loaded once per process (the planner's copy, or read again from the config)."""
        if "data" not in self.loaded:
            data = self.task.load_data(self.config)
            if "extra_train" in self.loaded:  # examples labelled by a teacher (distill --unlabeled)
                self.task.add_training_examples(data, self.loaded["extra_train"])
            self.loaded["data"] = data
        return self.loaded["data"]

    def build_strategy(self) -> "Strategy":
        """A fresh strategy instance with the planned options; it knows which of them came from measurement."""
        from thawkit.strategies import get_strategy_class

        cls = get_strategy_class(self.config.strategy)
        strategy = cls(cls.Config(**self.config.strategy_options))
        strategy.measured_options = {name: value for name, value in self.config.strategy_options.items()
                                     if self.sources.get(f"strategy_options.{name}", "").startswith("measured")}
        return strategy

    def source(self, name: str) -> str:
        return self.sources.get(name, DEFAULT)

    def given(self, name: str) -> bool:
        """Set by the user (command line, config file or API argument), not resolved by a rule."""
        return self.source(name).startswith(USER_SOURCES)

    def with_updates(self, source: str, **values: Any) -> "RunPlan":
        """The same plan with a few settings changed by its caller (recorded as ``source``)."""
        config = make_config({**self.config.model_dump(), **values})
        sources = {**self.sources, **{name: source for name in values}}
        return RunPlan(self.command, config, sources, self.measured, self.facts, self.cache_reason, dict(self.loaded))

    def rows(self) -> list[tuple[str, Any, str]]:
        """(setting, value, source) for every setting, strategy options included."""
        values = self.config.model_dump(mode="json")
        options = values.pop("strategy_options") or {}
        rows = [(name, value, self.source(name)) for name, value in values.items()]
        rows += [(f"strategy_options.{name}", value, self.source(f"strategy_options.{name}")) for name, value in options.items()]
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {"command": self.command, "config": self.config.model_dump(mode="json"), "sources": dict(self.sources),
                "measured": dict(self.measured), "facts": dict(self.facts), "cache_reason": self.cache_reason}

    def record(self) -> dict[str, Any]:
        """What thawkit.json keeps: each setting that a rule, not its field default, decided, with its source."""
        return {"command": self.command, "cache_reason": self.cache_reason or None,
                "settings": {name: {"value": value, "source": source} for name, value, source in self.rows() if source != DEFAULT}}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunPlan":
        return cls(values["command"], make_config(dict(values["config"]), "saved plan"), dict(values["sources"]),
                   dict(values.get("measured") or {}), dict(values.get("facts") or {}), values.get("cache_reason", ""))


def world_size(config: TrainConfig) -> int:
    """Processes that will train together: Ray Train workers, or a torchrun / accelerate launch."""
    import os

    return config.ray_workers or int(os.environ.get("WORLD_SIZE", "1"))


def out_dir(plan: RunPlan) -> Path:
    """The run folder (the planner always sets one for commands that write a run)."""
    if plan.config.out is None:
        raise ValueError(f"the {plan.command} plan has no output folder")
    return Path(plan.config.out)


__all__ = ["DEFAULT", "USER_SOURCES", "RunPlan", "out_dir", "world_size"]
