"""DoRA through ``peft``: LoRA whose update is split into a magnitude and a direction (Liu et al.
2024), with LoRA's options and targets; closer to full fine-tuning at LoRA's parameter count."""

from __future__ import annotations

from thawkit.strategies.base import register_strategy
from thawkit.strategies.lora import LoRA


@register_strategy("dora")
class DoRA(LoRA):
    """LoRA with a learned magnitude per output: a little more compute per step than LoRA."""

    use_dora = True
    epoch_cost = 0.9
    color = "#e377c2"
    order = 6
