"""Apply a ``TrainablePlan`` to a model and its optimizer.

Frozen parameters get ``requires_grad=False`` and stay out of the optimizer; when a later stage
thaws them they join it as new parameter groups (and the LR schedule learns about those groups).
Frozen blocks run in eval mode, so dropout and normalisation statistics never change them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import torch
from torch import nn

from thawkit.models.layout import BlockLayout
from thawkit.strategies.base import TrainablePlan


def set_requires_grad(model: nn.Module, trainable: Iterable[str]) -> None:
    wanted = set(trainable)
    for name, param in model.named_parameters():
        param.requires_grad_(name in wanted)


def set_frozen_blocks_eval(layout: BlockLayout, plan: TrainablePlan) -> None:
    """Put every fully frozen block in eval mode (call after ``model.train()``)."""
    trainable_blocks = set(plan.trainable_blocks(layout))
    for block in layout.blocks:
        if block not in trainable_blocks:
            for module in layout.block_modules(block):
                module.eval()


def with_head_multiplier(plan: TrainablePlan, head_names: set[str], multiplier: float) -> TrainablePlan:
    """The plan with the task head's LR multiplied: a fresh head learns faster than pretrained blocks."""
    if multiplier == 1.0:
        return plan
    scales = {name: plan.scale(name) * (multiplier if name in head_names else 1.0) for name in plan.trainable}
    return TrainablePlan(trainable=plan.trainable, lr_scale=scales)


def build_param_groups(
    model: nn.Module,
    plan: TrainablePlan,
    base_lr: float,
    weight_decay: float,
    decay_names: set[str],
    exclude: set[int] | None = None,
) -> list[dict[str, Any]]:
    """One group per (LR multiplier, decays?) pair; no weight decay on biases and norm weights."""
    exclude = exclude or set()
    grouped: dict[tuple[float, bool], list[torch.nn.Parameter]] = defaultdict(list)
    for name, param in model.named_parameters():
        if name not in plan.trainable or id(param) in exclude:
            continue
        grouped[(plan.scale(name), name in decay_names)].append(param)
    return [
        {
            "params": params,
            "lr": base_lr * scale,
            "weight_decay": weight_decay if decays else 0.0,
            "lr_scale": scale,
        }
        for (scale, decays), params in sorted(grouped.items(), key=lambda item: (-item[0][0], not item[0][1]))
    ]


def params_in_optimizer(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def add_groups_to_optimizer(
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    groups: list[dict[str, Any]],
) -> None:
    """Add thawed parameters as new groups, on the LR schedule's current point.

    ``LambdaLR`` (every transformers schedule) keeps one base LR and one lambda per group; a group
    added after it was built needs both, or it would keep its initial LR forever.
    """
    for group in groups:
        group = dict(group)
        group["initial_lr"] = group["lr"]
        if scheduler is not None and hasattr(scheduler, "lr_lambdas"):
            factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
            group["lr"] = group["initial_lr"] * factor
        optimizer.add_param_group(group)
        if scheduler is not None and hasattr(scheduler, "lr_lambdas"):
            scheduler.base_lrs.append(group["initial_lr"])
            scheduler.lr_lambdas.append(scheduler.lr_lambdas[0])
            if hasattr(scheduler, "_last_lr"):
                scheduler._last_lr.append(group["lr"])


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
