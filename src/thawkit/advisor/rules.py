"""The advisor's decisions: each task's rules (``Task.advisor_rules``, data in the task's own module,
citing the measurements they rest on), read top to bottom; the first rule that matches decides. And
whether domain-adaptive pretraining should come first."""

from __future__ import annotations

from typing import Any

from thawkit.tasks.roles.advice import FAR_DOMAIN, Rule, Situation

__all__ = ["FAR_DOMAIN", "Rule", "Situation", "dapt_advice", "decide"]


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


def decide(situation: Situation, task: Any = None) -> Rule:
    """The first of ``task``'s rules (a Task, or a task name; default: the default task) that matches."""
    from thawkit.config import TrainConfig
    from thawkit.tasks import get_task

    handler = get_task(task if isinstance(task, str) else TrainConfig.model_fields["task"].default) if not hasattr(task, "advisor_rules") else task
    for rule in handler.advisor_rules():
        if rule.when(situation):
            return rule
    raise ValueError(f"task {handler.name}'s advisor rules end without a rule that matches everything")
