"""ModelRole: the task's model, its inputs, and its saved layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    from torch import nn

    from thawkit.config import TrainConfig
    from thawkit.tasks.base import RunBase, TaskData


class ModelRole:
    name: ClassVar[str]
    run_type: ClassVar[str]  # recorded as thawkit.json "task" (e.g. "token-classification")
    default_max_length: ClassVar[int] = 128
    peft_task_type: ClassVar[str | None] = None  # peft's TaskType name for LoRA
    needs_fast_tokenizer: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True  # one input sequence per example: the frozen-layer cache applies
    # Evaluation may run in length order (less padding) when scores need only the labels that travel
    # with each example; QA scores windows against offsets kept beside the dataset, in dataset order.
    eval_in_length_order: ClassVar[bool] = True
    saves_merged_weights: ClassVar[bool] = False  # adapters are always merged before saving

    def build_model(self, cfg: "TrainConfig", data: "TaskData", strategy: Any) -> "nn.Module":
        raise NotImplementedError(f"task {self.name} must define build_model")

    def encode(self, data: "TaskData", split: str, tokenizer: Any, cfg: "TrainConfig") -> Any:
        """The split as a tokenized ``datasets.Dataset`` with labels for the Trainer."""
        raise NotImplementedError(f"task {self.name} must define encode")

    def collator(self, tokenizer: Any) -> Callable[[list[dict[str, Any]]], dict[str, Any]] | None:
        """Pads a batch of plain (uncached) examples; None: thawkit's default padding."""
        return None

    def run_facts(self, data: "TaskData") -> dict[str, Any]:
        """Task-specific facts for thawkit.json."""
        return dict(data.facts)

    def save_model(self, model: "nn.Module", folder: Path, base_model: str, max_length: int) -> None:
        """The model in the task's standard layout; ``base_model``: what an adapter names as its base."""
        model.save_pretrained(str(folder))
        if hasattr(model, "peft_config"):
            make_adapter_portable(model, folder, base_model)

    def make_run(self, model: "nn.Module", tokenizer: Any, data: "TaskData", info: dict[str, Any], path: Path | None) -> "RunBase":
        raise NotImplementedError(f"task {self.name} must define make_run")

    def load_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> "RunBase":
        raise NotImplementedError(f"task {self.name} must define load_run")

    def check_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> None:
        """Refuse (RunDirError) a run folder whose task files disagree before anything is loaded; the
        generic checks (files present, JSON, safetensors, model config, tokenizer) ran already."""


def check_label_names(path: Path, labels: dict[str, Any], minimum: int) -> list[str]:
    """labels.json's ``labels``: at least ``minimum`` distinct non-empty names."""
    from thawkit.errors import RunDirError
    from thawkit.rundir import DAMAGED_FIX, LABELS_FILE

    names = labels.get("labels")
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise RunDirError(f"{path / LABELS_FILE}: 'labels' is not a list of label names; {DAMAGED_FIX}")
    if len(names) < minimum or len(set(names)) != len(names):
        raise RunDirError(f"{path / LABELS_FILE}: {len(names)} label names ({len(set(names))} distinct), a run needs at least "
                          f"{minimum} distinct ones; {DAMAGED_FIX}")
    return names


def check_head_size(path: Path, names: list[str]) -> None:
    """The classifier's output size (its config's labels, or thawkit's feature head) equals labels.json's count."""
    from thawkit.errors import RunDirError
    from thawkit.rundir import DAMAGED_FIX, LABELS_FILE

    for name in ("thawkit_head.json", "config.json"):
        if not (path / name).is_file():
            continue
        config = json.loads((path / name).read_text(encoding="utf-8"))
        size = len(config["id2label"]) if isinstance(config.get("id2label"), dict) else config.get("num_labels")
        if size is not None and size != len(names):
            raise RunDirError(f"{path / LABELS_FILE}: {len(names)} labels, but the model in {path / name} has {size} outputs; "
                              f"{DAMAGED_FIX}")
        return


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
