"""(IA)^3 through ``peft``: learned vectors that rescale keys, values and the feed-forward
activations (Liu et al. 2022); about 10x fewer trainable parameters than LoRA, plus the task head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from thawkit.strategies.base import StrategyConfig, register_strategy
from thawkit.strategies.peft_base import PeftStrategy, heads_to_save, targets_from

if TYPE_CHECKING:
    from torch import nn

# (targets, feed-forward targets) by architecture; peft's tables are the fallback.
_TARGETS = {"bert": (["key", "value", "output.dense"], ["output.dense"]),
            "roberta": (["key", "value", "output.dense"], ["output.dense"]),
            "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
            "deberta-v2": (["key_proj", "value_proj", "output.dense"], ["output.dense"])}


class IA3Config(StrategyConfig):
    target_modules: list[str] | None = Field(default=None, description="modules rescaled (default: keys, values and the "
                                             "feed-forward output, per architecture)", json_schema_extra={"flag": "--ia3-target-modules"})
    feedforward_modules: list[str] | None = Field(default=None, description="of those, the feed-forward ones (their input "
                                                  "is rescaled)", json_schema_extra={"flag": "--ia3-feedforward-modules"})


@register_strategy("ia3")
class IA3(PeftStrategy):
    """Rescaling vectors only: the fewest parameters of the adapter methods, the highest learning rate."""

    Config = IA3Config
    default_lr = 3e-3
    sane_max_lr = 5e-2
    epoch_cost = 0.7
    trainable_share = 0.005
    color = "#bcbd22"
    order = 7

    def peft_config(self, model: nn.Module, task_type: str | None) -> Any:
        from peft import IA3Config as PeftIA3Config
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
            TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
        )

        cfg: Any = self.config
        own = {k: v[0] for k, v in _TARGETS.items()}
        own_ff = {k: v[1] for k, v in _TARGETS.items()}
        targets = cfg.target_modules or targets_from(own, TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING, model,
                                                     "(IA)3 target modules", "--ia3-target-modules")
        feedforward = cfg.feedforward_modules if cfg.feedforward_modules is not None else [
            m for m in targets_from(own_ff, TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING, model,
                                    "(IA)3 feed-forward modules", "--ia3-feedforward-modules") if m in targets]
        return PeftIA3Config(task_type=task_type, target_modules=targets, feedforward_modules=feedforward,
                             modules_to_save=heads_to_save(model, task_type))
