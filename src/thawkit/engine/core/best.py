"""Keep the best weights seen at any evaluation in memory, stop early, restore them at the end.

Only parameters that can change (what any stage trains) are copied. Holding parameter objects
rather than names keeps this correct while the cached path has the model's modules swapped.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback


class BestStateCallback(TrainerCallback):
    def __init__(self, params: list[torch.nn.Parameter], metric: str, greater_is_better: bool, patience: int, restore: bool,
                 count_from_step: int = 0) -> None:
        self.params = params
        self.count_from_step = count_from_step  # earlier evaluations never count towards patience
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.patience = patience
        self.restore = restore
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.best_epoch: float | None = None
        self.stopped_early = False
        self._snapshot: list[torch.Tensor] | None = None
        self._bad_evaluations = 0

    def _improved(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.greater_is_better else value < self.best_value

    def on_evaluate(self, args, state, control, metrics: dict[str, Any] | None = None, **kwargs):  # type: ignore[override]
        if not metrics or f"eval_{self.metric}" not in metrics:
            return
        value = float(metrics[f"eval_{self.metric}"])
        if self._improved(value):
            self.best_value, self.best_step, self.best_epoch = value, state.global_step, state.epoch
            self._bad_evaluations = 0
            if self.restore:
                self._snapshot = [p.detach().clone() for p in self.params]
        elif state.global_step >= self.count_from_step:
            self._bad_evaluations += 1
            if self.patience and self._bad_evaluations >= self.patience:
                control.should_training_stop = True
                self.stopped_early = True

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[override]
        if self.restore and self._snapshot is not None:
            with torch.no_grad():
                for param, saved in zip(self.params, self._snapshot):
                    param.copy_(saved)
            self._snapshot = None

    def checkpoint_state(self) -> tuple[dict[str, Any], list[torch.Tensor] | None]:
        """What a resumable checkpoint keeps: the counters and the best weights so far."""
        state = {"value": self.best_value, "step": self.best_step, "epoch": self.best_epoch,
                 "bad_evaluations": self._bad_evaluations, "stopped_early": self.stopped_early,
                 "snapshot": self._snapshot is not None}
        return state, self._snapshot

    def restore_checkpoint_state(self, state: dict[str, Any], snapshot: list[torch.Tensor] | None) -> None:
        self.best_value, self.best_step, self.best_epoch = state["value"], state["step"], state["epoch"]
        self._bad_evaluations, self.stopped_early = state["bad_evaluations"], state["stopped_early"]
        self._snapshot = [t.to(p.device) for t, p in zip(snapshot, self.params)] if snapshot is not None else None

    def summary(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "best_epoch": self.best_epoch,
            "restored_best": self.restore and self.best_step is not None,
            "stopped_early": self.stopped_early,
        }
