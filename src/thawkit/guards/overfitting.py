"""Overfitting: validation loss rising while training loss falls for N evaluations in a row."""

from __future__ import annotations

from typing import Any

from thawkit.guards.base import Finding


def check_overfitting(history: list[dict[str, Any]], patience: int = 2) -> list[Finding]:
    """``history``: the run's per-evaluation records (train_loss, validation.loss, epoch)."""
    pairs = [
        (h["epoch"], h.get("train_loss"), h.get("validation", {}).get("loss"))
        for h in history
        if h.get("train_loss") is not None and h.get("validation", {}).get("loss") is not None
    ]
    streak = 0
    for (_, train_before, val_before), (epoch, train_now, val_now) in zip(pairs, pairs[1:]):
        if val_now > val_before and train_now < train_before:
            streak += 1
            if streak >= patience:
                start = pairs[[p[0] for p in pairs].index(epoch) - patience]
                return [
                    Finding(
                        "overfitting",
                        f"validation loss rose from {start[2]:.4f} to {val_now:.4f} while training loss fell "
                        f"from {start[1]:.4f} to {train_now:.4f} (epochs {start[0]:g}-{epoch:g})",
                        "train fewer epochs, add data, freeze more layers (frozen/partial/lora) or raise --weight-decay; "
                        "early stopping keeps the best epoch's weights",
                    )
                ]
        else:
            streak = 0
    return []
