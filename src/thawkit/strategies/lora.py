"""LoRA through ``peft``: low-rank adapters in the attention projections, plus the task head.

The head (classifier, pooler; a decoder's final norm and score) is listed in ``modules_to_save`` so
it trains and is saved with the adapter: a reloaded run predicts exactly what the trained one did.
``--lora-rslora`` scales by alpha / sqrt(r) (rank-stabilised LoRA, Kalajdzievski 2023).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from thawkit.strategies.base import StrategyConfig, register_strategy
from thawkit.strategies.peft_base import PeftStrategy, heads_to_save, targets_from

if TYPE_CHECKING:
    from torch import nn

# Attention projections by architecture; peft's own table is the fallback (llama/qwen2/mistral: q_proj, v_proj).
_TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta-v2": ["query_proj", "value_proj"],
    "electra": ["query", "value"],
}


class LoRAConfig(StrategyConfig):
    r: int = Field(default=8, gt=0, description="adapter rank", json_schema_extra={"flag": "--lora-r"})
    alpha: int = Field(default=16, gt=0, description="scaling numerator (scale = alpha / r)", json_schema_extra={"flag": "--lora-alpha"})
    dropout: float = Field(default=0.1, ge=0, lt=1, description="dropout on the adapter input",
                           json_schema_extra={"flag": "--lora-dropout"})
    target_modules: list[str] | None = Field(default=None, description="modules that get adapters (default: detected per architecture)",
                                             json_schema_extra={"flag": "--lora-target-modules"})
    merge: bool = Field(default=False, description="merge the adapter into the base weights at save time",
                        json_schema_extra={"flag": "--merge-lora"})
    rslora: bool = Field(default=False, description="rank-stabilised scaling alpha / sqrt(r)", json_schema_extra={"flag": "--lora-rslora"})


def detect_target_modules(model: nn.Module) -> list[str]:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    return targets_from(_TARGETS, TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, model, "LoRA target modules",
                        "--lora-target-modules")


@register_strategy("lora")
class LoRA(PeftStrategy):
    """Trains ~1% of the parameters; the base stays shared, so many adapters can serve one base."""

    Config = LoRAConfig
    default_lr = 5e-4
    sane_max_lr = 5e-3
    epoch_cost = 0.75
    trainable_share = 0.02
    color = "#8c564b"
    order = 4
    use_dora = False

    @property
    def merge_adapters(self) -> bool:  # type: ignore[override]
        return bool(self.config.merge)  # type: ignore[attr-defined]

    def peft_config(self, model: nn.Module, task_type: str | None) -> Any:
        from peft import LoraConfig

        cfg: Any = self.config
        return LoraConfig(task_type=task_type, r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=cfg.target_modules or detect_target_modules(model), use_rslora=cfg.rslora,
                          use_dora=self.use_dora, modules_to_save=heads_to_save(model, task_type))
