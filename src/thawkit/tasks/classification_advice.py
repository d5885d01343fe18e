"""The advisor's rules for classification, as data: read top to bottom, the first rule that matches decides.

Each rule is a condition on the data profile plus a recommendation and the reason in words. The
thresholds follow common practice (Howard & Ruder 2018; Sun et al. 2019; Gururangan et al. 2020;
Hu et al. 2021): tiny data -> frozen features; small -> frozen or LoRA; medium -> partial freezing
(measured against gradual unfreezing and full fine-tuning); large -> full fine-tuning, with domain-adaptive pretraining when the domain
is far from the backbone's pretraining text.
"""

from __future__ import annotations

from thawkit.tasks.roles.advice import FAR_DOMAIN, MEMORY_RULE, Rule, Situation, budget_short

FEW_PER_CLASS = 64  # the largest size measured against SetFit, frozen, full, LoRA and gradual (docs/benchmarks.md, "Few labels")


def few_labels(s: Situation) -> bool:
    """A handful of labels per class (the median class; a rare class alone does not make data few-shot)."""
    return s.examples_per_class is not None and s.examples_per_class <= FEW_PER_CLASS and s.num_examples < 500


CLASSIFICATION_RULES: tuple[Rule, ...] = (
    MEMORY_RULE,
    Rule(
        "few-labels", few_labels, "fewshot",
        # Measured (benchmarks/fewshot_vs_setfit.py, SST-2 and Financial PhraseBank, 8/32/64 per class, 3 seeds):
        # fewshot was best or within 1 point of the best of fewshot, frozen, full, LoRA and gradual at every size.
        "up to 64 labeled examples per class: contrastive training of the sentence encoder on pairs, then logistic "
        "regression, was the best or within 1 point of it at 8, 32 and 64 per class on SST-2 and Financial PhraseBank "
        "(against frozen, full, LoRA and gradual)",
        epochs=3,
        warnings=("a few labels per class: scores vary by several points with which examples were labeled; "
                  "thawkit select picks the texts to label next",),
        suggestions=("thawkit select --pool UNLABELED --budget 16 --run RUN: which texts to label next",),
    ),
    Rule(
        "tiny-data", lambda s: s.num_examples < 100, "frozen",
        "under ~100 labeled examples fine-tuning overfits; a frozen backbone with a small head is the robust choice",
        epochs=10,
        warnings=("very little labeled data: expect high variance; label more examples (thawkit select) or try --strategy fewshot",),
    ),
    Rule(
        "budget-short", budget_short, "frozen",
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
)
