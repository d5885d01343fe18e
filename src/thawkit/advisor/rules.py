"""The advisor's decision rules, as data: read top to bottom, the first rule that matches decides.

Each rule is a condition on the data profile plus a recommendation and the reason in words. The
thresholds follow common practice (Howard & Ruder 2018; Sun et al. 2019; Gururangan et al. 2020;
Hu et al. 2021): tiny data -> frozen features; small -> frozen or LoRA; medium -> partial freezing
(measured against gradual unfreezing and full fine-tuning); large -> full fine-tuning, with domain-adaptive pretraining when the domain
is far from the backbone's pretraining text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Situation:
    """What the rules look at."""

    num_examples: int
    domain_similarity: float  # [0, 1], 1 = like the backbone's general pretraining text
    memory_gb: float | None  # memory available for training (GPU memory with --gpu)
    model_memory_gb: float  # what full fine-tuning of the backbone needs, estimated
    budget_seconds: float | None
    full_ft_seconds: float | None  # estimated time of full fine-tuning on this data and hardware


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


def _memory_short(s: Situation) -> bool:
    return s.memory_gb is not None and s.memory_gb < s.model_memory_gb


def _budget_short(s: Situation) -> bool:
    return s.budget_seconds is not None and s.full_ft_seconds is not None and s.full_ft_seconds > s.budget_seconds


RULES: list[Rule] = [
    Rule(
        "memory-short", _memory_short, "lora",
        "full fine-tuning would not fit in the memory given; LoRA trains ~1% of the parameters",
    ),
    Rule(
        "tiny-data", lambda s: s.num_examples < 100, "frozen",
        "under ~100 labeled examples fine-tuning overfits; a frozen backbone with a small head is the robust choice",
        epochs=10,
        warnings=("very little labeled data: expect high variance; label more examples or try few-shot methods",),
    ),
    Rule(
        "budget-short", _budget_short, "frozen",
        "full fine-tuning would exceed the time budget; the frozen backbone is cached once and trains in seconds",
        epochs=5,
    ),
    Rule(
        "small-data-far-domain", lambda s: s.num_examples < 1000 and s.domain_similarity < FAR_DOMAIN, "lora",
        "a few hundred examples in a domain far from the backbone's: LoRA adapts every layer a little without overfitting",
        epochs=5,
    ),
    Rule(
        # Measured (benchmarks/size_sweep.py, SST-2): frozen won at 200 examples by 7 points, but at 1,000
        # full fine-tuning won and frozen was 1.5 points behind, so the frozen range ends at 500.
        "small-data", lambda s: s.num_examples < 500, "frozen",
        "100-500 examples: the pretrained features carry most of the signal; training only the head avoids overfitting",
        epochs=5,
        suggestions=("lora is the alternative if the frozen head plateaus",),
    ),
    Rule(
        "medium-data-far-domain", lambda s: s.num_examples < 10_000 and s.domain_similarity < FAR_DOMAIN, "full",
        "1,000-10,000 examples in a far domain: the lower layers need to adapt too",
        suggestions=("domain-adaptive pretraining on unlabeled in-domain text first (thawkit dapt)",),
    ),
    Rule(
        "medium-data", lambda s: s.num_examples < 10_000, "partial",
        "500-10,000 examples: partial freezing trains the top layers on cached lower-layer states; with the measured "
        "defaults it is level with gradual unfreezing and within 1 point of full fine-tuning (SST-2 1,000; SST-2 2,000 "
        "over 3 seeds; Financial PhraseBank) at about 0.6x gradual's and 0.5x full's time",
        epochs=4,
        suggestions=("full fine-tuning is the alternative when time allows; compare both with thawkit compare",),
    ),
    Rule(
        "large-data-far-domain", lambda s: s.domain_similarity < FAR_DOMAIN, "full",
        "over 10,000 examples: full fine-tuning; the domain is far from the backbone's",
        epochs=3,
        suggestions=(
            "domain-adaptive pretraining on unlabeled in-domain text first (thawkit dapt)",
            "distil the fine-tuned model into a smaller student for deployment",
        ),
    ),
    Rule(
        "large-data", lambda s: True, "full",
        "over 10,000 examples: full fine-tuning has data enough to adapt every layer",
        epochs=3,
        suggestions=("distil the fine-tuned model into a smaller student for deployment",),
    ),
]


# Tasks other than classification, from the measurements in docs/defaults.md and docs/benchmarks.md
# (one seed each on the embedded MiniLM-L6; the rule says what it rests on).
_MEMORY_RULE = RULES[0]
TASK_RULES: dict[str, list[Rule]] = {
    "ner": [
        _MEMORY_RULE,
        Rule(
            "budget-short", _budget_short, "partial",
            "full fine-tuning would exceed the time budget; partial freezing trains from cached lower layers "
            "(CoNLL-2003, 1,000 sentences: F1 0.743 in 21 s against llrd's 0.790 in 39 s)",
        ),
        Rule(
            "ner", lambda s: True, "llrd",
            "NER measured on CoNLL-2003 (1,000 sentences): llrd F1 0.790, full 0.762, partial 0.743, gradual 0.729, "
            "LoRA 0.726, frozen 0.526: tags need the encoder's token states to adapt, and lower layers at a lower rate did best",
            suggestions=("full fine-tuning is the alternative; compare both with thawkit compare --task ner",),
        ),
    ],
    "similarity": [
        _MEMORY_RULE,
        Rule(
            "tiny-data", lambda s: s.num_examples < 100, "frozen",
            "under ~100 scored pairs: the checkpoint's own embeddings (STS-B Spearman 0.810 untrained) are the safe choice",
        ),
        Rule(
            "budget-short", _budget_short, "frozen",
            "fine-tuning would exceed the time budget; the checkpoint's own embeddings need no training",
        ),
        Rule(
            "similarity", lambda s: True, "gradual",
            "measured on STS-B (2,000 pairs): gradual Spearman 0.858, llrd 0.857, full 0.856, partial 0.856, LoRA 0.849, "
            "untrained embeddings 0.810",
            suggestions=("llrd and full were within 0.2 points; compare them with thawkit compare --task similarity",),
        ),
    ],
    "qa": [
        _MEMORY_RULE,
        Rule(
            "qa", lambda s: True, "llrd",
            "QA measured on SQuAD (1,582 questions, whole articles, 3 epochs): llrd F1 65.0, gradual 64.0, full 62.4 "
            "(mean of 2 seeds), LoRA 51.6, partial 49.2, frozen 14.1 (one seed): span extraction needs every layer to "
            "adapt, lower layers at a lower rate did best",
            suggestions=("gradual unfreezing and full fine-tuning are the alternatives; compare them with thawkit compare --task qa",),
        ),
    ],
}


def dapt_advice(domain_similarity: float, unlabeled_texts: int | None) -> dict[str, object] | None:
    """Whether to run domain-adaptive pretraining first (Gururangan et al. 2020: the gain grows as the
    task's domain moves away from the pretraining text); None when no unlabeled text was given."""
    if unlabeled_texts is None:
        return None
    if domain_similarity < FAR_DOMAIN:
        return {"recommended": True, "reason": f"domain similarity {domain_similarity:.2f} is below {FAR_DOMAIN} (far from general "
                f"English) and {unlabeled_texts:,} unlabeled in-domain texts are given: continued masked-LM pretraining on them "
                "first adapts the encoder's vocabulary use to the domain"}
    return {"recommended": False, "reason": f"domain similarity {domain_similarity:.2f} is at or above {FAR_DOMAIN}: the data is "
            "close to the backbone's pretraining text, where domain-adaptive pretraining gains little"}


def decide(situation: Situation, task: str = "classification") -> Rule:
    for rule in TASK_RULES.get(task, RULES):
        if rule.when(situation):
            return rule
    raise AssertionError("the last rule matches everything")
