"""The Trainer's arguments and the run-length facts derived from a config."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from thawkit.config import TrainConfig
from thawkit.engine.core.loggers import check_loggers


def distributed_cpu() -> bool:
    """Launched by torchrun / accelerate launch with several processes and no GPU."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def training_arguments(cfg: TrainConfig, output_dir: Path, multi_stage: bool) -> Any:
    from transformers import TrainingArguments

    # Accelerate only sets up CPU data parallelism (gloo) when told the run is on the CPU.
    check_loggers(cfg.report_to)
    save_strategy, save_steps, _ = cfg.checkpoint_plan()
    cpu_ddp = {"use_cpu": True, "ddp_backend": "gloo"} if distributed_cpu() else {}
    bf16 = cfg.precision == "bf16"  # resolved by the planner (auto: where the hardware is fast at it)
    if bf16 and not torch.cuda.is_available():
        cpu_ddp.setdefault("use_cpu", True)  # the Trainer accepts bf16 without a GPU only when told it is on the CPU
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        # Resumable checkpoints (thawkit rotates them: engine/core/resume.py); the best weights are kept in
        # memory by BestStateCallback and saved with each checkpoint.
        save_strategy=save_strategy,
        save_steps=save_steps or 500,
        save_total_limit=None,
        # The planner resolves the interval; a plan saved before it did (a run resumed from an older
        # version) logs per epoch, as that version did.
        **({"logging_strategy": "steps", "logging_steps": cfg.logging_steps} if cfg.logging_steps else {"logging_strategy": "epoch"}),
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=cfg.report_to or "none",
        run_name=Path(cfg.out).name if cfg.out is not None else None,  # the MLflow / W&B run is named after the folder
        disable_tqdm=True,
        # Gradual unfreezing thaws parameters that DDP registered but saw no gradient for yet.
        ddp_find_unused_parameters=multi_stage,
        dataloader_num_workers=0,
        # Batches carry the cache coordinates of their rows (cache_index, cache_split) to the trainer,
        # which swaps in the cached states; the tasks' datasets hold only model inputs otherwise.
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=bf16,
        **cpu_ddp,
    )


# Runs shorter than this many optimizer steps left partial, llrd and LoRA at the majority class on
# 200 SST-2 sentences (39 steps at 3 epochs); at 10 epochs (130 steps) every strategy reached
# 0.79-0.81 macro-F1 (docs/defaults.md). Mosbach et al. 2021 trace few-sample fine-tuning failures to
# too few iterations, not to the data size itself.
MIN_TRAINING_STEPS = 150
MAX_RAISED_EPOCHS = 10
# Evaluations before this step (or before warmup ends) do not count towards early stopping: a model
# still at its starting point has not shown that training stopped helping.
MIN_STEPS_BEFORE_STOPPING = 100


def steps_per_epoch(cfg: TrainConfig, num_examples: int, world_size: int = 1) -> int:
    """Optimizer steps in one epoch over ``num_examples``."""
    return math.ceil(num_examples / (cfg.batch_size * cfg.gradient_accumulation_steps * world_size))


def epochs_with_enough_steps(epochs: float, num_examples: int, batch_size: int) -> float:
    """``epochs``, raised for small data until the run has ``MIN_TRAINING_STEPS`` optimizer steps
    (at most ``MAX_RAISED_EPOCHS``). The planner and the advisor use it, so the advice's epochs and
    time are the run's."""
    per_epoch = math.ceil(num_examples / batch_size) if num_examples > 0 else 0
    if per_epoch == 0 or per_epoch * epochs >= MIN_TRAINING_STEPS:
        return epochs
    return max(epochs, float(min(MAX_RAISED_EPOCHS, math.ceil(MIN_TRAINING_STEPS / per_epoch))))


def stopping_starts_at(cfg: TrainConfig, total_steps: int) -> int:
    """The first optimizer step whose evaluation may count towards early stopping."""
    return max(math.ceil(total_steps * cfg.warmup_ratio), min(MIN_STEPS_BEFORE_STOPPING, total_steps // 2))


def reachable_stages(strategy: Any, cfg: TrainConfig, num_examples: int, world_size: int) -> int:
    """Stages a run of this length gets to: one per epoch, or one per ``every_steps`` steps."""
    every = strategy.stage_every_steps
    if every:
        return math.ceil(math.ceil(steps_per_epoch(cfg, num_examples, world_size) * cfg.epochs) / every)
    return math.ceil(cfg.epochs)


def peak_memory_mb() -> float:
    """Peak memory since the last ``reset_peak_memory`` (the GPU's, else this process's resident set)."""
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:  # Linux: VmHWM, which reset_peak_memory can reset between runs in one process
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def reset_peak_memory() -> None:
    """Start a fresh peak, so each run of a comparison reports its own high-water mark."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident set size
    except OSError:
        pass  # not Linux, or not allowed: the peak is then the process's since it started
