"""LR range test (Smith 2015; fastai's lr_find): train for a few steps with the learning rate rising
exponentially, record the smoothed loss, stop once it blows up.

Known to be unreliable for fine-tuning pretrained transformers: the loss of a pretrained model
falls at almost any small LR, warmup is skipped, and the test sees a few hundred steps of one
stage; the LR it suggests is routinely too high for full fine-tuning. thawkit reports it as a
diagnostic (where the loss diverges is the useful fact) and caps the range at 10x the strategy's
sane maximum; the defaults come from measurement (docs/defaults.md), not from this.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from thawkit.engine.cache.cached_training import SwitchableCollator
from thawkit.engine.core.arguments import training_arguments
from thawkit.engine.core.loop import build_loop, prepare_controller
from thawkit.runplan import RunPlan


@dataclass
class LRFinding:
    strategy: str
    lrs: list[float]
    losses: list[float]  # smoothed
    suggested_lr: float | None  # steepest fall of the smoothed loss
    diverged_at: float | None  # first LR whose loss exceeded 4x the minimum
    configured_lr: float
    sane_max_lr: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def verdict(self) -> str:
        # The usual reading of the range test: stay an order of magnitude below the blow-up.
        if self.diverged_at is not None and self.configured_lr >= self.diverged_at / 10:
            return (f"the configured LR {self.configured_lr:g} is within 10x of where the loss diverged ({self.diverged_at:g}): "
                    f"too high; use at most {self.diverged_at / 10:g}")
        return f"the configured LR {self.configured_lr:g} is below the divergence point" + (
            f" ({self.diverged_at:g})" if self.diverged_at is not None else " (none reached within the range)")


def lr_find(plan: RunPlan, steps: int = 100, start_lr: float = 1e-7, end_lr: float | None = None) -> LRFinding:
    """Run the range test for the plan's strategy on its data (nothing is saved; the lr-find plan
    has the cache and the progress display off)."""
    from transformers import set_seed

    from thawkit.engine.core.pipeline import encoded_split, prepare_run

    started = time.perf_counter()
    cfg, task = plan.config, plan.task
    strategy = plan.build_strategy()
    set_seed(cfg.seed)
    prepared = prepare_run(plan, strategy)
    data, tokenizer = prepared.data, prepared.tokenizer
    end_lr = end_lr or 10 * strategy.sane_max_lr
    model = strategy.prepare(prepared.model, task.peft_task_type)
    layout, controller, ever_trainable = prepare_controller(strategy, model, cfg)
    if not ever_trainable:
        from thawkit.errors import ConfigError

        raise ConfigError(f"--strategy {cfg.strategy} trains nothing with gradients here, so there is no LR to find; fix: pick "
                          "another strategy")
    # The range test trains what the last stage trains (gradual: the whole encoder).
    with tempfile.TemporaryDirectory() as scratch:
        args = training_arguments(cfg, scratch, controller.num_stages > 1)
        train_ds = encoded_split(task, data, "train", tokenizer, cfg)
        val_ds = encoded_split(task, data, "validation", tokenizer, cfg)
        collator = SwitchableCollator(tokenizer, task.collator(tokenizer)) if task.cacheable else task.collator(tokenizer)
        loop = build_loop(cfg, controller, args, train_ds, val_ds, collator, tokenizer, task.metric_function(data, "validation"),
                          cfg.metric, ever_trainable, class_weights=prepared.class_weights,
                          reduce_logits=task.logits_for_metrics())
        trainer = loop.trainer
        trainer.divergence = None  # divergence is what we are looking for
        optimizer = trainer.create_optimizer()
        for stage in range(1, controller.num_stages):
            controller.enter(stage, 0, optimizer, None)
        scales = [group["lr"] / cfg.lr for group in optimizer.param_groups]  # LLRD / head multipliers kept
        model.train()
        controller.enforce_eval_modes()
        lrs, losses, smoothed, best = [], [], 0.0, math.inf
        diverged_at = None
        batches = iter(())
        factor = (end_lr / start_lr) ** (1 / max(steps - 1, 1))
        for step in range(steps):
            lr = start_lr * factor**step
            for group, scale in zip(optimizer.param_groups, scales):
                group["lr"] = lr * scale
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(trainer.get_train_dataloader())
                batch = next(batches)
            inputs = trainer.batch_inputs(batch)
            loss = trainer.compute_loss(model, inputs)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            smoothed = value if step == 0 else 0.9 * smoothed + 0.1 * value
            debiased = smoothed / (1 - 0.9 ** (step + 1))
            lrs.append(lr)
            losses.append(debiased)
            best = min(best, debiased)
            if not math.isfinite(debiased) or (step > 5 and debiased > 4 * best):
                diverged_at = lr
                break
    suggested = _steepest(lrs, losses)
    return LRFinding(cfg.strategy, lrs, losses, suggested, diverged_at, float(cfg.lr), strategy.sane_max_lr,
                     round(time.perf_counter() - started, 2))


def _steepest(lrs: list[float], losses: list[float]) -> float | None:
    """The LR where the smoothed loss falls fastest per log-LR (before divergence)."""
    if len(losses) < 8:
        return None
    usable = losses[: max(8, int(len(losses) * 0.9))]
    skip = max(5, len(usable) // 10)  # the smoothed curve's first points still settle
    slopes = {i: (usable[i + 1] - usable[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(skip, len(usable) - 1)}
    if not slopes:
        return None
    index = min(slopes, key=lambda i: slopes[i])
    return lrs[index] if slopes[index] < 0 else None


__all__ = ["LRFinding", "lr_find"]
