"""Callbacks: per-evaluation history records and a rich progress display."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from thawkit.engine.core.stages import StageController
from thawkit.engine.core.trainability import count_trainable


class HistoryCallback(TrainerCallback):
    """One record per evaluation during training: the learning curve plus what was trainable."""

    def __init__(self, controller: StageController) -> None:
        self.controller = controller
        self.records: list[dict[str, Any]] = []
        self._training = False

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        self._training = True
        self._started = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[override]
        self._training = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[override]
        if not self._training or metrics is None:
            return
        train_losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
        previous = self.records[-1]["step"] if self.records else 0
        # The training loss logged every --logging-steps since the previous evaluation: its points, and
        # their mean as this evaluation's training loss (the epoch's, as a per-epoch log would give).
        since = [[entry["step"], entry["loss"]] for entry in state.log_history if "loss" in entry and entry.get("step", 0) > previous]
        self.records.append(
            {
                "step": state.global_step,
                "epoch": round(float(state.epoch or 0.0), 4),
                "elapsed_seconds": round(time.perf_counter() - getattr(self, "_started", time.perf_counter()), 3),
                "train_loss": sum(loss for _, loss in since) / len(since) if since else train_losses[-1] if train_losses else None,
                "train_loss_points": since,
                "validation": {
                    key.removeprefix("eval_"): value
                    for key, value in metrics.items()
                    if key.startswith("eval_") and not key.endswith(("_runtime", "_per_second"))
                },
                "stage": self.controller.stage,
                "trainable_params": count_trainable(self.controller.model),
                "trainable_blocks": self.controller.plan.trainable_blocks(self.controller.layout),
            }
        )


class RichProgressCallback(TrainerCallback):
    """A rich progress bar over optimizer steps, showing the latest loss and validation metric."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.progress: Any = None
        self.task: Any = None

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, status="")

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[override]
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]
        if self.progress is None or not logs:
            return
        parts = []
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if f"eval_{self.metric}" in logs:
            parts.append(f"val {self.metric} {logs[f'eval_{self.metric}']:.4f}")
        if parts:
            self.progress.update(self.task, status=" · ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[override]
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class LineProgressCallback(TrainerCallback):
    """One line per evaluation, prefixed by the run's name: readable when several runs share a
    terminal; between evaluations a step line at least every ``every_seconds`` (never silent for minutes)."""

    def __init__(self, metric: str, label: str, every_seconds: float = 30.0) -> None:
        self.metric = metric
        self.label = label
        self.every_seconds = every_seconds
        self._started = self._last = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        self._started = self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[override]
        now = time.perf_counter()
        if not state.is_world_process_zero or now - self._last < self.every_seconds:
            return
        self._last = now
        rate = state.global_step / max(now - self._started, 1e-9)
        left = (state.max_steps - state.global_step) / max(rate, 1e-9)
        print(f"  {self.label}: step {state.global_step}/{state.max_steps}, epoch {float(state.epoch or 0):.2f}, "
              f"{rate:.2f} steps/s, ~{left:.0f}s left ({now - self._started:.1f}s)", flush=True)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[override]
        if not state.is_world_process_zero or not metrics:
            return
        value = metrics.get(f"eval_{self.metric}")
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
        self._last = time.perf_counter()
        print(f"  {self.label}: epoch {float(state.epoch or 0):.2f}/{args.num_train_epochs:g}, step {state.global_step}/{state.max_steps}, "
              f"val {self.metric} {shown} ({self._last - self._started:.1f}s)", flush=True)


class TimeLimitCallback(TrainerCallback):
    """Stops training once ``seconds`` have passed (a comparison's share of its budget), evaluating first."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.stopped = False
        self._started = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[override]
        if time.perf_counter() - self._started > self.seconds and not control.should_training_stop:
            self.stopped = True
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_log = True


class TimedCheckpointCallback(TrainerCallback):
    """A resumable checkpoint every ``seconds`` of training (short runs write none)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[override]
        if time.perf_counter() - self._last >= self.seconds:
            control.should_save = True
            self._last = time.perf_counter()


class CheckpointAfterEvaluation(TrainerCallback):
    """A step or timed checkpoint that falls on the last step of an epoch is taken after that
    epoch's evaluation, so it holds the evaluation's history and best weights (else a run resumed
    from it would skip the final evaluation)."""

    def __init__(self) -> None:
        self.pending = False

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[override]
        epoch = float(state.epoch or 0.0)
        if control.should_save and abs(epoch - round(epoch)) < 1e-6 and args.eval_strategy == "epoch":
            control.should_save = False
            self.pending = True

    def on_epoch_end(self, args, state, control, **kwargs):  # type: ignore[override]
        if self.pending:
            control.should_save = True
            self.pending = False


class EvaluationListener(TrainerCallback):
    """Tells a listener (a Ray Tune trial's reporter) the selection metric after each evaluation
    during training, with the record the history callback just wrote."""

    def __init__(self, metric: str, history: HistoryCallback, listener: Any) -> None:
        self.metric = metric
        self.history = history
        self.listener = listener
        self.seen = 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[override]
        if len(self.history.records) == self.seen:  # not an evaluation during training
            return
        self.seen = len(self.history.records)
        record = self.history.records[-1]
        total = sum(p.numel() for p in self.history.controller.model.parameters())
        self.listener({"epoch": record["epoch"], "metric": self.metric, "value": record["validation"].get(self.metric),
                       "trainable_params": record["trainable_params"], "total_params": total,
                       "trainable_blocks": record["trainable_blocks"], "elapsed_seconds": record["elapsed_seconds"]})


class StrategyStepHooks(TrainerCallback):
    """A strategy's per-step work (AdaLoRA's rank reallocation), after the optimizer step and before
    the gradients are cleared; the step counted is the one just taken."""

    def __init__(self, hooks: tuple[Any, ...]) -> None:
        self.hooks = hooks

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[override]
        for hook in self.hooks:
            hook(model, state.global_step + 1)
