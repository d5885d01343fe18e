"""LoRA through ``peft``: low-rank adapters in the attention projections, plus the task head.

The head (classifier, pooler) is listed in ``modules_to_save`` so it trains and is saved with the
adapter: a reloaded run predicts exactly what the trained one did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from thawkit.errors import ConfigError
from thawkit.models.layout import BlockLayout, head_module_names
from thawkit.strategies.base import Strategy, StrategyConfig, TrainablePlan, register_strategy

if TYPE_CHECKING:
    from torch import nn

# Attention projections by architecture; peft's own table is the fallback.
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


def detect_target_modules(model: nn.Module) -> list[str]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in _TARGETS:
        return _TARGETS[model_type]
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    if model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])
    raise ConfigError(
        f"no default LoRA target modules for model type {model_type!r}; "
        "fix: set strategy_options.target_modules (e.g. ['query', 'value']) in the config"
    )


@register_strategy("lora")
class LoRA(Strategy):
    """Trains ~1% of the parameters; the base stays shared, so many adapters can serve one base."""

    Config = LoRAConfig
    default_lr = 5e-4
    sane_max_lr = 5e-3
    epoch_cost = 0.75
    trainable_share = 0.02
    color = "#8c564b"
    order = 4
    adapts_with_adapters = True
    trains_all_activations = True

    @property
    def merge_adapters(self) -> bool:  # type: ignore[override]
        return bool(self.config.merge)  # type: ignore[attr-defined]

    def prepare(self, model: nn.Module, peft_task_type: str | None = None) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        cfg = self.config
        peft_config = LoraConfig(
            task_type=peft_task_type,
            r=cfg.r,  # type: ignore[attr-defined]
            lora_alpha=cfg.alpha,  # type: ignore[attr-defined]
            lora_dropout=cfg.dropout,  # type: ignore[attr-defined]
            target_modules=cfg.target_modules or detect_target_modules(model),  # type: ignore[attr-defined]
            modules_to_save=head_module_names(model),
        )
        return get_peft_model(model, peft_config)

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        # peft marks exactly the adapter and modules_to_save copies as trainable.
        trainable = [
            name
            for names in layout.params.values()
            for name in names
            if ".lora_" in name or ".modules_to_save." in name
        ]
        return TrainablePlan(trainable=frozenset(trainable))
