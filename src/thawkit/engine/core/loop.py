"""The training loop every task shares: stage controller, callbacks, the Trainer, cleanup on failure.
Tasks bring their data, model, collator and metrics (``thawkit.engine.core.pipeline`` wires them)."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from thawkit.engine.core.arguments import steps_per_epoch, stopping_starts_at
from thawkit.engine.core.best import BestStateCallback
from thawkit.engine.core.callbacks import (
    CheckpointAfterEvaluation,
    EvaluationListener,
    HistoryCallback,
    LineProgressCallback,
    RichProgressCallback,
    StrategyStepHooks,
    TimedCheckpointCallback,
    TimeLimitCallback,
)
from thawkit.engine.core.stages import SkipEmptyStages, StageCallback, StageController
from thawkit.engine.core.trainability import set_requires_grad

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from thawkit.config import TrainConfig
    from thawkit.engine.core.distill_loss import Distillation
    from thawkit.models.layout import BlockLayout
    from thawkit.strategies import Strategy


def prepare_controller(strategy: Strategy, model: Any, cfg: TrainConfig) -> tuple[BlockLayout, StageController, set[str]]:
    """Layout, stage controller and the set of parameters any stage trains (all marked trainable,
    since DDP registers what is trainable when it wraps the model)."""
    from thawkit.models.layout import build_layout

    layout = build_layout(model)
    strategy = SkipEmptyStages.wrap(strategy, layout)
    controller = StageController(strategy, model, layout, cfg.lr, cfg.weight_decay, decay_names=set(),
                                 head_lr_mult=cfg.head_lr_mult)
    controller.plan = strategy.plan(layout, 0)  # validates strategy options against this model
    ever_trainable = controller.ever_trainable()
    set_requires_grad(model, ever_trainable)
    return layout, controller, ever_trainable


def discard_or_keep(partial_dir: Path, exc: BaseException) -> None:
    """A failure of the input (bad data, a guard, a diverged LR) discards the partial run; an
    interruption or crash keeps its complete checkpoints for --resume."""
    import logging

    from thawkit.engine.core.resume import complete_checkpoints
    from thawkit.errors import ThawkitError

    kept = complete_checkpoints(partial_dir / "checkpoints")
    if isinstance(exc, ThawkitError) or not kept:
        shutil.rmtree(partial_dir, ignore_errors=True)
        return
    final = partial_dir.parent / partial_dir.name[1 : -len(".partial")]
    message = f"checkpoint at step {kept[-1].name.split('-')[-1]} kept in {kept[-1]}; continue with: thawkit train --resume {final}"
    exc.add_note(message)
    if isinstance(exc, OSError):
        exc.reports_notes = True  # type: ignore[attr-defined]  # the CLI's disk-full line says it
    if not getattr(exc, "reports_notes", False):  # the CLI's interruption says it in its one line
        logging.getLogger("thawkit").warning(message[0].upper() + message[1:])


def stop_run(partial_dir: Path, exc: BaseException, is_main: bool) -> BaseException | None:
    """A run failed with ``exc``: discard or keep its partial folder; a full disk, however a library
    worded it, comes back as the ``OSError`` to raise instead (None: re-raise ``exc``)."""
    from thawkit.rundir import as_disk_full

    full = as_disk_full(exc, partial_dir)
    if is_main:
        discard_or_keep(partial_dir, full or exc)
    return full if full is not None and full is not exc else None


@dataclass
class RunHooks:
    """What a caller outside the engine adds to one run's loop (Ray Tune, Ray Train): Trainer
    callbacks, a wrapper applied to the Trainer once built, and a listener told the selection
    metric after every evaluation (a dict: epoch, metric, value, trainable_params, total_params,
    trainable_blocks, elapsed_seconds)."""

    callbacks: list[Any] = field(default_factory=list)
    wrap_trainer: Callable[[Any], Any] | None = None
    on_evaluation: Callable[[dict[str, Any]], None] | None = None


@dataclass
class Loop:
    trainer: Any
    history: HistoryCallback
    best: BestStateCallback
    time_limit: TimeLimitCallback | None
    checkpoint_state: Any = None


def example_lengths(dataset: Any) -> list[int] | None:
    """Tokens per training example, for length-grouped batches; None where an example is not one
    sequence (similarity pairs)."""
    if hasattr(dataset, "lengths"):
        return dataset.lengths()
    if "input_ids" in (getattr(dataset, "column_names", None) or []):
        return [len(ids) for ids in dataset["input_ids"]]
    return None


def build_loop(
    cfg: TrainConfig, controller: StageController, args: TrainingArguments, train_ds: Any, val_ds: Any, collator: Any,
    tokenizer: Any, compute_metrics: Callable[[Any], dict[str, float]], metric: str, ever_trainable: set[str],
    class_weights: list[float] | None = None, materialize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    distillation: Distillation | None = None, hooks: RunHooks | None = None,
    reduce_logits: Callable[[Any, Any], Any] | None = None, training_loss: Callable[..., Any] | None = None,
    warm_started: bool = False,
) -> Loop:
    from transformers import PrinterCallback

    from thawkit.engine.core.resume import CheckpointState
    from thawkit.engine.core.trainer import StrategyTrainer
    from thawkit.guards.learning_rate import DivergenceMonitor

    model = controller.model
    history = HistoryCallback(controller)
    total_steps = math.ceil(steps_per_epoch(cfg, len(train_ds), args.world_size) * cfg.epochs)
    best = BestStateCallback(
        [p for n, p in model.named_parameters() if n in ever_trainable],
        metric=metric,
        greater_is_better=metric != "loss",
        patience=cfg.early_stopping_patience,
        restore=cfg.select_best,
        count_from_step=stopping_starts_at(cfg, total_steps),
    )
    time_limit = TimeLimitCallback(cfg.time_limit_seconds) if cfg.time_limit_seconds is not None else None
    callbacks = [StageCallback(controller), history, best]
    if controller.strategy.step_hooks():
        callbacks.append(StrategyStepHooks(controller.strategy.step_hooks()))
    if cfg.progress == "bar":
        callbacks.append(RichProgressCallback(metric))
    elif cfg.progress == "lines":
        callbacks.append(LineProgressCallback(metric, Path(cfg.out).name if cfg.out else "run"))
    callbacks += [time_limit] if time_limit is not None else []
    checkpoint_seconds = cfg.checkpoint_plan()[2]
    callbacks += [TimedCheckpointCallback(checkpoint_seconds)] if checkpoint_seconds else []
    callbacks.append(CheckpointAfterEvaluation())  # after the timed one, which may ask for a save
    if hooks is not None:
        callbacks += hooks.callbacks
        if hooks.on_evaluation is not None:
            callbacks.append(EvaluationListener(metric, history, hooks.on_evaluation))
    # A warm start (thawkit update) begins near zero loss on what it knows, and batches of a class it
    # has not learned yet lift the loss without any divergence: only a non-finite loss is watched.
    divergence = DivergenceMonitor(cfg.lr, watch_rise=not warm_started)
    checkpoint_state = CheckpointState(controller, history, best, divergence)
    trainer = StrategyTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=reduce_logits,
        callbacks=callbacks,
        controller=controller,
        train_lengths=example_lengths(train_ds) if cfg.group_by_length else None,
        class_weights=class_weights,
        divergence=divergence,
        materialize=materialize,
        checkpoint_state=checkpoint_state,
        distillation=distillation,
        training_loss=training_loss,
        keep_checkpoints=10**6 if cfg.save_checkpoints else cfg.keep_checkpoints,  # --save-checkpoints keeps every epoch
    )
    trainer.remove_callback(PrinterCallback)  # the rich progress bar replaces the raw log dicts
    controller.decay_names = set(trainer.get_decay_parameter_names(model))
    if hooks is not None and hooks.wrap_trainer is not None:
        trainer = hooks.wrap_trainer(trainer)
    return Loop(trainer, history, best, time_limit, checkpoint_state)


def run_loop(loop: Loop, partial_dir: Path, is_main: bool, runtime: Any, fit: Callable[[], float | None] | None = None,
             resume_from: Path | None = None) -> tuple[float | None, float]:
    """Train (or ``fit`` in closed form), from ``resume_from`` when given. On failure nothing is
    published; complete checkpoints stay for ``--resume`` unless the input itself was at fault.
    Returns (loss, seconds)."""
    started = time.perf_counter()
    try:
        if fit is not None:
            training_loss = fit()
        else:
            training_loss = float(loop.trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None).training_loss)
    except BaseException as exc:
        replacement = stop_run(partial_dir, exc, is_main)
        if replacement is not None:
            raise replacement from exc
        raise
    finally:
        if runtime is not None:
            runtime.finish()  # the full model again, for evaluation and saving
    return training_loss, time.perf_counter() - started
