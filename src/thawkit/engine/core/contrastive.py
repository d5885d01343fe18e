"""Contrastive training of a pooled classifier's body before its closed-form head (``fewshot``).

Each step encodes one class-balanced batch of training examples (through the frozen-layer cache
when the bottom is frozen) and compares every pair in it, so a batch of B examples gives
B(B-1)/2 pairs for B encoder passes. The optimizer holds what the strategy's plan trains, in the
controller's parameter groups (no weight decay on biases and LayerNorm weights), with 10% linear
warmup and linear decay, at the plan's LR.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from thawkit.strategies.base import ContrastivePhase


log = logging.getLogger("thawkit")
PROGRESS_SECONDS = 30.0


class BalancedBatches:
    """Batches of example indices with every class as equally represented as the batch allows:
    each class's examples are drawn without replacement, reshuffled when used up; with more classes
    than fit at two examples each, a random subset of classes per batch. Multi-label (or one class):
    plain shuffled batches."""

    def __init__(self, labels: list[Any], batch_size: int, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.size = min(batch_size, len(labels))
        single = all(isinstance(label, int) for label in labels)
        groups: dict[Any, list[int]] = {}
        for index, label in enumerate(labels):
            groups.setdefault(label if single else 0, []).append(index)
        self.groups = [torch.tensor(members) for members in groups.values()]
        self.queues: list[list[int]] = [[] for _ in self.groups]

    def _take(self, group: int, count: int) -> list[int]:
        taken: list[int] = []
        while len(taken) < count:
            if not self.queues[group]:
                members = self.groups[group]
                self.queues[group] = members[torch.randperm(len(members), generator=self.generator)].tolist()
            taken.append(self.queues[group].pop())
        return taken

    def next(self) -> list[int]:
        if len(self.groups) == 1:
            return self._take(0, self.size)
        order = torch.randperm(len(self.groups), generator=self.generator).tolist()
        classes = order[: max(2, min(len(order), self.size // 2))]  # at least two examples of each class drawn
        share, extra = divmod(self.size, len(classes))
        batch: list[int] = []
        for position, group in enumerate(classes):  # a class with fewer examples than its share gives each once
            batch += self._take(group, min(share + (position < extra), len(self.groups[group])))
        return batch


def pair_targets(labels: torch.Tensor) -> torch.Tensor:
    """(batch, batch) 1.0 where two examples share a class (multi-label: any label), else 0.0."""
    if labels.dim() == 2:
        return ((labels.float() @ labels.float().T) > 0).float()
    return (labels[:, None] == labels[None, :]).float()


def contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, phase: ContrastivePhase) -> torch.Tensor:
    """embeddings (batch, hidden), L2-normalised; labels (batch,) or (batch, classes)."""
    same = pair_targets(labels)
    n = embeddings.shape[0]
    if phase.loss == "batch-hard":
        from sentence_transformers.losses import BatchHardTripletLoss, BatchHardTripletLossDistanceFunction

        loss = BatchHardTripletLoss(None, distance_metric=BatchHardTripletLossDistanceFunction.cosine_distance, margin=0.25)  # type: ignore[arg-type]
        if labels.dim() == 2:
            raise ValueError("batch-hard needs one class per example")
        return loss.compute_loss_from_embeddings([embeddings], labels)
    similarity = embeddings @ embeddings.T  # (batch, batch) cosine similarities
    if phase.loss == "supcon":
        eye = torch.eye(n, dtype=torch.bool, device=embeddings.device)
        logits = (similarity / phase.temperature).masked_fill(eye, -1e4)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positives = same.masked_fill(eye, 0.0)
        has = positives.sum(1) > 0
        per_example = -(log_prob * positives).sum(1) / positives.sum(1).clamp(min=1.0)
        return per_example[has].mean() if has.any() else similarity.sum() * 0.0
    # cosine (SetFit's CosineSimilarityLoss): squared error to 1 / 0, over the upper triangle, positive
    # and negative pairs each half of the loss however many of each the batch holds
    rows, cols = torch.triu_indices(n, n, 1, device=embeddings.device)
    target = same[rows, cols]
    error = (similarity[rows, cols] - target) ** 2
    positive = (error * target).sum() / target.sum().clamp(min=1.0)
    negative = (error * (1 - target)).sum() / (1 - target).sum().clamp(min=1.0)
    return 0.5 * positive + 0.5 * negative


def train_body(trainer: Any, controller: Any, phase: ContrastivePhase, seed: int, progress: bool = False) -> dict[str, Any]:
    """Contrastive training of ``trainer.model``'s body on its training set; returns what happened
    (steps, first and last losses) for thawkit.json. ``progress``: a line at least every 30 s."""
    from transformers import get_linear_schedule_with_warmup

    from thawkit.guards.base import GuardError

    controller.enter(0, 0)  # what the plan trains; the cached path at its boundary
    model = trainer.model
    dataset, collate = trainer.train_dataset, trainer.data_collator
    labels = [_label_key(dataset[i]["labels"]) for i in range(len(dataset))]
    batches = BalancedBatches(labels, phase.batch_size, seed)
    steps = phase.steps(len(dataset))
    with controller.full_structure():  # parameter names as the plan has them (the cached path renames layers)
        optimizer = torch.optim.AdamW(controller.initial_param_groups(), lr=controller.base_lr)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * steps), steps)
    autocast = torch.autocast("cpu" if trainer.args.device.type == "cpu" else trainer.args.device.type, dtype=torch.bfloat16) \
        if trainer.args.bf16 else nullcontext()
    losses: list[float] = []
    started = last_line = time.perf_counter()
    torch.manual_seed(seed)
    model.train()
    controller.enforce_eval_modes()
    for _ in range(steps):
        batch = trainer.batch_inputs(collate([dataset[i] for i in batches.next()]))
        gold = batch.pop("labels")
        with autocast:
            states = model.backbone(**batch).last_hidden_state
        embeddings = nn.functional.normalize(model.features(states.float(), batch["attention_mask"]), dim=-1)
        loss = contrastive_loss(embeddings, gold, phase)
        if not torch.isfinite(loss):
            raise GuardError(f"divergence: the contrastive loss became {float(loss)} at step {len(losses) + 1}; "
                             f"fix: a lower --lr than {controller.base_lr:g}")
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if progress and time.perf_counter() - last_line >= PROGRESS_SECONDS:
            last_line = time.perf_counter()
            elapsed = last_line - started
            log.info("contrastive step %d/%d, loss %.4f, %.0f s left", len(losses), steps, losses[-1],
                     elapsed / len(losses) * (steps - len(losses)))
    model.eval()
    window = max(1, min(10, steps // 5))
    return {"loss": phase.loss, "steps": steps, "batch_size": batches.size, "epochs": phase.epochs,
            "loss_first": round(sum(losses[:window]) / window, 6), "loss_last": round(sum(losses[-window:]) / window, 6)}


def _label_key(label: Any) -> Any:
    """A single label as an int, a multi-label row as a tuple (hashable, and not grouped by class)."""
    if isinstance(label, (list, tuple)) or (hasattr(label, "dim") and label.dim() > 0):
        return tuple(float(v) for v in label)
    return int(label)
