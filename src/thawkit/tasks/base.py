"""The task interface: what differs between sequence classification, NER, QA and similarity.

A task reads and validates its data, builds its model, tokenizes, collates, scores and saves; the
training sequence itself (strategy, guards, cache, Trainer, forgetting, merge check, run writing)
lives once, in ``thawkit.engine.pipeline``, and applies to every task by construction.

A task registers itself in its own module with ``@register_task("name")``; importing
``thawkit.tasks`` loads every built-in task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, TypeVar


from thawkit.errors import ConfigError
from thawkit.plugins import Registry
from thawkit.rundir import METRICS_FILE, read_history

if TYPE_CHECKING:
    from torch import nn
    from thawkit.config import TrainConfig

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


class Task:
    """Base class with the defaults most tasks share; override what differs."""

    name: ClassVar[str]
    run_type: ClassVar[str]  # recorded as thawkit.json "task" (e.g. "token-classification")
    default_metric: ClassVar[str]  # selects the best evaluation unless --metric says otherwise
    metrics: ClassVar[tuple[str, ...]]  # metrics --metric may name for this task
    default_max_length: ClassVar[int] = 128
    peft_task_type: ClassVar[str | None] = None  # peft's TaskType name for LoRA
    needs_fast_tokenizer: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True  # one input sequence per example: the frozen-layer cache applies
    # Evaluation may run in length order (less padding) when scores need only the labels that travel
    # with each example; QA scores windows against offsets kept beside the dataset, in dataset order.
    eval_in_length_order: ClassVar[bool] = True
    supports_class_weights: ClassVar[bool] = False
    saves_merged_weights: ClassVar[bool] = False  # adapters are always merged before saving

    # -- data and model -------------------------------------------------------------------
    def load_data(self, cfg: "TrainConfig") -> TaskData:
        raise NotImplementedError

    def build_model(self, cfg: "TrainConfig", data: TaskData, strategy: Any) -> nn.Module:
        raise NotImplementedError

    def encode(self, data: TaskData, split: str, tokenizer: Any, cfg: "TrainConfig") -> Any:
        """The split as a tokenized ``datasets.Dataset`` with labels for the Trainer."""
        raise NotImplementedError

    def collator(self, tokenizer: Any) -> Callable[[list[dict[str, Any]]], dict[str, Any]] | None:
        """Pads a batch of plain (uncached) examples; None: thawkit's default padding."""
        return None

    def selection_metric(self, data: TaskData) -> str:
        """The metric that selects the best evaluation when --metric is not given."""
        return self.default_metric

    # -- guards ---------------------------------------------------------------------------
    def sample_texts(self, data: TaskData, limit: int = 500) -> list[str]:
        """Training texts the tokenizer guard looks at."""
        raise NotImplementedError

    def class_counts(self, data: TaskData) -> dict[str, int] | None:
        """Examples per class, for the imbalance guard and class weights; None: not a class task."""
        return None

    # -- scoring --------------------------------------------------------------------------
    def metric_function(self, data: TaskData, split: str) -> Callable[[Any], dict[str, float]]:
        """Scalar metrics of an ``EvalPrediction`` on ``split`` (called at every evaluation)."""
        raise NotImplementedError

    def final_metrics(self, data: TaskData, split: str, output: Any) -> dict[str, Any]:
        """metrics.json's entry for a split, from ``Trainer.predict``'s output."""
        scalar = self.metric_function(data, split)(output)
        return {**scalar, "loss": _float_or_none(output.metrics.get(f"{split}_loss"))}

    # -- artifacts ------------------------------------------------------------------------
    def run_facts(self, data: TaskData) -> dict[str, Any]:
        """Task-specific facts for thawkit.json."""
        return dict(data.facts)

    def save_model(self, model: nn.Module, folder: Path, cfg: "TrainConfig") -> None:
        model.save_pretrained(str(folder))
        if hasattr(model, "peft_config"):
            make_adapter_portable(model, folder, cfg.model)

    def make_run(self, model: nn.Module, tokenizer: Any, data: TaskData, info: dict[str, Any], path: Path | None) -> "RunBase":
        raise NotImplementedError

    def load_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> "RunBase":
        raise NotImplementedError

    # -- distillation (thawkit distill) ---------------------------------------------------
    supports_distillation: ClassVar[bool] = False

    def distillation_soft_loss(self, student_logits: Any, teacher_logits: Any, labels: Any, temperature: float) -> Any:
        """KL(teacher || student) at temperature T, scaled by T^2 (Hinton et al. 2015), over the last
        dimension: one distribution per example."""
        import torch

        t = temperature
        return torch.nn.functional.kl_div(torch.log_softmax(student_logits / t, -1), torch.softmax(teacher_logits / t, -1),
                                          reduction="batchmean") * t * t

    def teacher_labelled(self, teacher: "RunBase", path: Path, cfg: "TrainConfig") -> Any:
        """Examples in this task's training format: unlabeled input (``--unlabeled``) labelled by the teacher."""
        raise ConfigError(f"--unlabeled is not supported for --task {self.name}; fix: drop it")

    def add_training_examples(self, data: TaskData, examples: Any) -> None:
        """Extend the training split (never validation or test) with ``examples``."""
        raise ConfigError(f"--unlabeled is not supported for --task {self.name}; fix: drop it")

    def speed_probe(self, run: "RunBase", data: TaskData) -> Callable[[int], None]:
        """Runs inference over a number of the data's examples (for measured speed-ups)."""
        texts = self.sample_texts(data, 256)

        def infer(count: int) -> None:
            run.predict(texts[:count], batch_size=32)

        return infer

    # -- export (thawkit export --onnx) ----------------------------------------------------
    # The exported outputs, each with its dynamic axes (batch; and sequence for per-token outputs).
    onnx_outputs: ClassVar[dict[str, tuple[str, ...]]] = {"logits": ("batch",)}
    onnx_token_types: ClassVar[bool] = True  # the graph takes token_type_ids (sentence pairs)

    def onnx_module(self, model: nn.Module) -> nn.Module:
        """What ONNX export traces: forward(input_ids, attention_mask[, token_type_ids]) returning
        ``onnx_outputs`` as a tuple."""
        from thawkit.models.onnx import outputs_as_tuple

        return outputs_as_tuple(model, tuple(self.onnx_outputs), self.onnx_token_types)

    def validation_metrics(self, run: "RunBase", cfg: "TrainConfig") -> tuple[dict[str, Any], int] | None:
        """(metrics, examples) of ``run`` on the validation data its training (``cfg``) used, or None
        where that data is not readable here (int8 export reports the change on it)."""
        if cfg.validation is None or not Path(cfg.validation).exists():
            return None
        values = run.evaluate(cfg.validation)
        return values, next((v for k, v in values.items() if k.startswith("num_") and isinstance(v, int)), 0)

    def check_config(self, cfg: "TrainConfig", strategy: Any) -> None:
        """Reject settings this task cannot honour, with a fix."""
        if getattr(strategy, "uses_pooled_head", False):
            raise ConfigError(f"pooled heads (pooling/head options) are for classification; fix: drop them for --task {self.name}")
        if cfg.class_weights == "balanced" and not self.supports_class_weights:
            raise ConfigError(f"--class-weights is for classification; fix: drop it for --task {self.name}")
        if cfg.metric is not None and cfg.metric not in self.metrics:
            raise ConfigError(f"--metric {cfg.metric} is not a {self.name} metric; fix: use one of {', '.join(self.metrics)}")


def make_adapter_portable(model: Any, folder: Path, base_model: str) -> None:
    """An adapter folder stock tools can load: the base named portably (the hub id of a packaged
    alias, or the name the user gave, never thawkit's own site-packages path) and the base config
    with the labels beside it, so ``AutoConfig.from_pretrained(run)`` knows the classes."""
    from thawkit.models.backbone import portable_model_name

    adapter_file = folder / "adapter_config.json"
    adapter = json.loads(adapter_file.read_text(encoding="utf-8"))
    adapter["base_model_name_or_path"] = portable_model_name(base_model)
    adapter_file.write_text(json.dumps(adapter, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    model.get_base_model().config.save_pretrained(str(folder))


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


class RunBase:
    """A trained run of any task: its model, tokenizer, facts and metrics; ``predict`` per task."""

    def __init__(self, model: Any, tokenizer: Any, info: dict[str, Any], path: Path | None = None,
                 labels: list[str] | None = None, multi_label: bool = False) -> None:
        self.model, self.tokenizer, self.info, self.path = model, tokenizer, info, path
        self.labels: list[str] = list(labels or [])
        self.multi_label = multi_label

    @property
    def max_length(self) -> int:
        return int(self.info.get("config", {}).get("max_length") or 128)

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

    def evaluate(self, data: str | Path, **columns: Any) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path}, task={self.info.get('task')}, strategy={self.info.get('strategy')})"
