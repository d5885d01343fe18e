"""DataRole: what a task's data is, and what the guards and distillation read from it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from thawkit.errors import ConfigError

if TYPE_CHECKING:
    from thawkit.config import TrainConfig
    from thawkit.tasks.base import RunBase, TaskData


class DataRole:
    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # metrics --metric may name for this task
    supports_class_weights: ClassVar[bool] = False
    supports_prompting: ClassVar[bool] = False  # `thawkit prompt` / compare --prompt-shots score it (labels as words)
    generates: ClassVar[bool] = False  # the model writes text (generation settings apply)
    # (flag, config field) only this task honours: the planner refuses them for every other task.
    own_settings: ClassVar[tuple[tuple[str, str], ...]] = ()

    def load_data(self, cfg: "TrainConfig") -> "TaskData":
        raise NotImplementedError(f"task {self.name} must define load_data")

    def sample_texts(self, data: "TaskData", limit: int = 500) -> list[str]:
        """Training texts the tokenizer guard (and the advisor's profile) look at."""
        raise NotImplementedError(f"task {self.name} must define sample_texts")

    def task_settings(self, cfg: "TrainConfig", data: "TaskData") -> dict[str, tuple[Any, str]]:
        """Settings only this task has, resolved from its data: name -> (value, where it came from);
        the planner applies each unless the user gave it."""
        return {}

    def class_counts(self, data: "TaskData") -> dict[str, int] | None:
        """Examples per class, for the imbalance guard and class weights; None: not a class task."""
        return None

    def teacher_labelled(self, teacher: "RunBase", path: Path, cfg: "TrainConfig") -> Any:
        """Examples in this task's training format: unlabeled input (``--unlabeled``) labelled by the teacher."""
        raise ConfigError(f"--unlabeled is not supported for --task {self.name}; fix: drop it")

    def add_training_examples(self, data: "TaskData", examples: Any) -> None:
        """Extend the training split (never validation or test) with ``examples``."""
        raise ConfigError(f"--unlabeled is not supported for --task {self.name}; fix: drop it")

    def check_config(self, cfg: "TrainConfig", strategy: Any) -> None:
        """Reject settings this task cannot honour, with a fix (the planner calls it)."""
        if strategy.uses_pooled_head:
            raise ConfigError(f"--strategy {cfg.strategy} with a pooled-feature head (fewshot; frozen's --pooling/--head) is for "
                              f"classification; fix: for --task {self.name} drop those options or choose another strategy")
        supported = getattr(strategy, "peft_task_types", None)
        if supported is not None and getattr(self, "peft_task_type", None) not in supported:
            raise ConfigError(f"--strategy {cfg.strategy} is not available for --task {self.name} (peft's "
                              f"{cfg.strategy} supports {', '.join(sorted(supported))} only); fix: use lora, dora or ia3")
        if cfg.class_weights == "balanced" and not self.supports_class_weights:
            raise ConfigError(f"--class-weights is for classification; fix: drop it for --task {self.name}")
        if cfg.metric is not None and cfg.metric not in self.metrics:
            raise ConfigError(f"--metric {cfg.metric} is not a {self.name} metric; fix: use one of {', '.join(self.metrics)}")
