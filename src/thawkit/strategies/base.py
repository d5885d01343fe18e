"""The strategy interface: which parameters train at each stage, and at which learning rate.

Trainability is data. A strategy returns a ``TrainablePlan`` for a stage; one function
(``thawkit.engine.core.trainability.apply_plan``) applies it to the model and the optimizer. Stages
advance per epoch, or every ``stage_every_steps`` optimizer steps when a strategy sets it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict

from thawkit.models.layout import BlockLayout
from thawkit.plugins import Registry

if TYPE_CHECKING:
    from torch import nn

S = TypeVar("S")

_STRATEGIES = Registry("strategy", ("Config", "plan", "default_lr", "sane_max_lr", "epoch_cost", "trainable_share", "color", "order"))


@functools.lru_cache(maxsize=1)
def measured_defaults() -> dict[str, Any]:
    """task -> strategy -> model size ("small" under 50M parameters, "base") -> {lr, head_lr_mult, options}."""
    path = Path(__file__).with_name("measured_defaults.json")
    table = json.loads(path.read_text(encoding="utf-8"))
    return {task: entries for task, entries in table.items() if not task.startswith("_")}


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator: ``@register_strategy("llrd")`` makes the strategy available by name."""
    return _STRATEGIES.register(name)


def registered_strategies() -> dict[str, type["Strategy"]]:
    return _STRATEGIES.classes


class StrategyConfig(BaseModel):
    """Base for each strategy's own options; unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TrainablePlan:
    """Parameter names that train, and a learning-rate multiplier per parameter (default 1.0)."""

    trainable: frozenset[str]
    lr_scale: Mapping[str, float] = field(default_factory=dict)

    def scale(self, name: str) -> float:
        return self.lr_scale.get(name, 1.0)

    def trainable_blocks(self, layout: BlockLayout) -> list[str]:
        return [b for b in layout.blocks if any(n in self.trainable for n in layout.params[b])]


@dataclass(frozen=True)
class ContrastivePhase:
    """Contrastive training of the encoder before a closed-form head (``fewshot``): class-balanced
    batches of ``batch_size`` examples, every pair within a batch compared; ``epochs`` passes over
    the examples (``engine/core/contrastive.py`` runs it)."""

    epochs: float
    batch_size: int
    loss: str  # "cosine", "supcon" or "batch-hard"
    temperature: float = 0.1
    keep_pretrained: float = 0.0  # afterwards: weights = (1 - k) x trained + k x pretrained (WiSE-FT)

    def steps(self, num_examples: int) -> int:
        import math

        return max(1, math.ceil(self.epochs * num_examples / min(self.batch_size, max(num_examples, 1))))


def blocks_plan(
    layout: BlockLayout, blocks: list[str] | set[str], lr_scale_by_block: Mapping[str, float] | None = None
) -> TrainablePlan:
    """A plan that trains whole blocks, with an optional LR multiplier per block."""
    scales = {}
    for block, scale in (lr_scale_by_block or {}).items():
        for name in layout.params.get(block, []):
            scales[name] = scale
    return TrainablePlan(trainable=frozenset(layout.names(blocks)), lr_scale=scales)


class Strategy:
    """The one strategy interface: a base class with the defaults most strategies share.

    A strategy carries its own facts, so guards, the advisor and reports never branch on its name.
    ``plan(layout, stage)`` is the one method each strategy must write; multi-stage strategies
    (gradual unfreezing) also override ``num_stages``, ``stage_every_steps`` and ``plan_schedule``.
    """

    name: ClassVar[str]  # set by @register_strategy
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig
    default_lr: ClassVar[float]
    sane_max_lr: ClassVar[float]  # the LR guard warns far above this (BERT-style encoders, AdamW)
    epoch_cost: ClassVar[float]  # time of one epoch relative to full fine-tuning, with the cache
    trainable_share: ClassVar[float]  # rough share of parameters that train (memory estimate)
    color: ClassVar[str]  # in reports
    order: ClassVar[int]  # position in tables and compare (widest cache passes first)
    config: StrategyConfig

    # Capabilities the engine and reports read (no one branches on a strategy's name):
    uses_pooled_head: bool = False  # brings its own pooled-feature model (see load_model)
    fits_head_in_closed_form: bool = False  # the head is fitted on cached features, not trained by the Trainer
    feature_head_candidates: tuple[str, ...] = ()  # heads fitted on pooled features; the best on validation is kept
    adapts_with_adapters: bool = False  # layers train through adapters, not their own weights
    merge_adapters: bool = False  # merge adapters into the base weights at save time
    trains_all_activations: bool = False  # backward runs through every layer (memory estimate)
    cached_pass: bool = False  # one pass through the frozen bottom precedes training
    changes_inputs: bool = False  # the inputs change per step (virtual tokens): the frozen-layer cache cannot apply
    refits_on_validation: bool = False  # once a split-off validation set is scored, train the saved model again with it (few-shot)
    measured_options: Mapping[str, Any] = {}  # options that came from measured_defaults.json, not the user (set by the plan)

    # The head's LR multiplier where measured_defaults.json has no entry: 1x. The table raises it where
    # measured better (full classification on small encoders, LoRA NER: 10x; docs/defaults.md).
    default_head_lr_mult: float = 1.0
    # Small encoders (under 50M parameters, e.g. MiniLM-L6) tolerate and need a higher LR; None: default_lr.
    small_model_lr: float | None = None

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        raise NotImplementedError(f"strategy {type(self).__name__} must define plan(layout, stage)")

    def load_model(self, name: str, num_labels: int, id2label: dict[int, str], problem_type: str) -> "nn.Module | None":
        """A model of the strategy's own (frozen pooled-feature heads); None: the task's standard model."""
        return None

    def contrastive_phase(self) -> ContrastivePhase | None:
        """Contrastive training of the encoder before the closed-form head fit (few-shot); None: none."""
        return None

    def step_hooks(self) -> tuple[Callable[[Any, int], None], ...]:
        """Called with (model, global step) after every optimizer step, before gradients are cleared."""
        return ()

    def resolve_for(self, model_name: str, multi_label: bool) -> None:
        """Settle ``auto`` options that depend on the checkpoint and the data (called by the planner and the task)."""

    def default_lr_for(self, num_params: int) -> float:
        """The measured default LR for a model of this size (docs/defaults.md)."""
        small = self.small_model_lr is not None and num_params < 50_000_000
        return self.small_model_lr if small else self.default_lr  # type: ignore[return-value]

    def defaults_for(self, task: str, num_params: int) -> dict[str, Any]:
        """LR and head multiplier for this task and model size: the measured table
        (measured_defaults.json, written from benchmarks/defaults_sweep.py) where it has an entry,
        else the strategy's own defaults. ``source`` says which."""
        size = "small" if num_params < 50_000_000 else "base"
        entry = measured_defaults().get(task, {}).get(self.name, {}).get(size, {})
        return {
            "lr": float(entry.get("lr", self.default_lr_for(num_params))),
            "head_lr_mult": float(entry.get("head_lr_mult", self.default_head_lr_mult)),
            "options": dict(entry.get("options", {})),
            "source": f"measured for {task}/{self.name}/{size} model (strategies/measured_defaults.json)" if entry
            else f"{self.name}'s default (strategies/{self.name}.py)",
        }

    def __init__(self, config: StrategyConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def resolved_options(self) -> dict:
        """Options as they apply to this run (``auto`` settings resolved); recorded in thawkit.json."""
        return self.config.model_dump()

    def plan_schedule(self, total_steps: int, layout: BlockLayout) -> None:
        """Called once the run's length is known (multi-stage strategies spread their stages over it)."""

    def prepare(self, model: nn.Module, peft_task_type: str | None = None) -> nn.Module:
        return model

    def num_stages(self, layout: BlockLayout) -> int:
        return 1

    @property
    def stage_every_steps(self) -> int | None:
        return None
