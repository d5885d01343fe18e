"""AdviceRole: the advisor's decision rules for a task, as data, and what its profile reads from the
task's data. Rules cite the measurements they rest on (docs/defaults.md, docs/benchmarks.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar

if TYPE_CHECKING:
    from thawkit.tasks.base import TaskData


@dataclass(frozen=True)
class Situation:
    """What the rules look at."""

    num_examples: int
    domain_similarity: float  # [0, 1], 1 = like the backbone's general pretraining text
    memory_gb: float | None  # memory available for training (GPU memory with --gpu)
    model_memory_gb: float  # what full fine-tuning of the backbone needs, estimated
    budget_seconds: float | None
    full_ft_seconds: float | None  # estimated time of full fine-tuning on this data and hardware
    examples_per_class: float | None = None  # median training examples per class (class tasks), else None


@dataclass(frozen=True)
class Rule:
    name: str
    when: Callable[[Situation], bool]
    strategy: str
    reason: str
    epochs: int = 3
    warnings: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = field(default_factory=tuple)


FAR_DOMAIN = 0.5  # below this similarity the data is "far" from general English


def memory_short(s: Situation) -> bool:
    return s.memory_gb is not None and s.memory_gb < s.model_memory_gb


def budget_short(s: Situation) -> bool:
    return s.budget_seconds is not None and s.full_ft_seconds is not None and s.full_ft_seconds > s.budget_seconds


MEMORY_RULE = Rule("memory-short", memory_short, "lora",
                   "full fine-tuning would not fit in the memory given; LoRA trains ~1% of the parameters")


@dataclass
class AdviceInput:
    """What the advisor's data profile reads from a task's training data."""

    texts: list[str]  # the training inputs (first text of a pair)
    pairs: list[str] | None = None  # second texts, where examples are pairs
    label_names: list[list[str]] | None = None  # per example, where each example is a labelled text (duplicate/leak checks)
    validation_texts: list[str] = field(default_factory=list)


class AdviceRole:
    name: ClassVar[str]
    default_max_length: ClassVar[int]
    # The advisor picks max length from the data's p99; False: the task's own length (QA windows long contexts).
    length_from_data: ClassVar[bool] = True
    truncation_fix: ClassVar[str | None] = None  # what the advisor suggests when many inputs exceed the max length
    example_noun: ClassVar[str] = "training examples"
    # A warning for a causal decoder backbone (each token sees only the text to its left), where the
    # task's measurements show what that costs; None: no known cost.
    decoder_warning: ClassVar[str | None] = None

    def advisor_rules(self) -> list[Rule]:
        """Read top to bottom, the first rule that matches decides (the last matches everything)."""
        raise NotImplementedError(f"task {self.name} must define advisor_rules")

    def advice_input(self, data: "TaskData") -> AdviceInput:
        return AdviceInput(self.sample_texts(data, limit=5000))  # type: ignore[attr-defined]

    def describe_data(self, num_train: int, num_classes: int) -> str:
        """The advisor's first reason: the data in a few words."""
        tags = f", {num_classes} tags" if num_classes else ""
        return f"{num_train:,} {self.example_noun} ({self.name}{tags})"
