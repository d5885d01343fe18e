"""Learning rate far above the strategy's sane range (before training), and divergence in the
first steps (during training): NaN or a rising loss stops the run and suggests a lower rate."""

from __future__ import annotations

import math

from thawkit.guards.base import Finding

FAR_ABOVE = 3.0


def check_learning_rate(strategy: str, lr: float, limit: float | None) -> list[Finding]:
    """``limit``: the strategy's ``sane_max_lr`` (above it the pretrained weights are at risk)."""
    if limit is None or lr <= limit * FAR_ABOVE:
        return []
    return [
        Finding(
            "learning-rate",
            f"--lr {lr:g} is far above the sane range for strategy {strategy!r} (up to ~{limit:g}); "
            "it can destroy the pretrained weights",
            f"use --lr {limit / 2:g} or lower",
        )
    ]


class DivergenceMonitor:
    """Watches per-step training losses during the first ``window`` steps."""

    def __init__(self, lr: float, window: int = 30, rise: float = 1.5, min_rise: float = 0.1, watch_rise: bool = True) -> None:
        self.lr = lr
        self.watch_rise = watch_rise
        self.window = window
        self.rise = rise
        # Small losses (a cosine-regression MSE of 0.03) wobble by more than 1.5x without diverging:
        # a rise must also be large in absolute terms (STS-B LoRA was stopped at 0.028 -> 0.04).
        self.min_rise = min_rise
        self.losses: list[float] = []

    def observe(self, loss: float) -> Finding | None:
        step = len(self.losses) + 1
        if not math.isfinite(loss):
            return self._finding(f"the training loss became {loss} at step {step}")
        if step > self.window or not self.watch_rise:
            return None
        self.losses.append(loss)
        head, tail = self.losses[:5], self.losses[-5:]
        head_mean, tail_mean = sum(head) / len(head), sum(tail) / len(tail)
        if step >= 15 and tail_mean > self.rise * head_mean and tail_mean - head_mean > self.min_rise:
            return self._finding(
                f"the training loss rose from {sum(head) / len(head):.3f} to {sum(tail) / len(tail):.3f} "
                f"over the first {step} steps"
            )
        return None

    def _finding(self, what: str) -> Finding:
        return Finding("divergence", f"training diverged: {what} with --lr {self.lr:g}", f"lower the learning rate, e.g. --lr {self.lr / 10:g}", "error")
