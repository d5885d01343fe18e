"""LoRA through ``peft``: low-rank adapters in the attention projections, plus the task head.

The head (classifier, pooler) is listed in ``modules_to_save`` so it trains and is saved with the
adapter: a reloaded run predicts exactly what the trained one did.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from thawkit.errors import ConfigError
from thawkit.models.layout import BlockLayout, head_module_names
from thawkit.registry import register_strategy
from thawkit.strategies.base import StaticStrategyMixin, StrategyConfig, TrainablePlan

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
    r: int = Field(default=8, gt=0, description="adapter rank")
    alpha: int = Field(default=16, gt=0, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] | None = Field(default=None, description="default: detected per architecture")
    merge: bool = Field(default=False, description="merge the adapter into the base weights at save time")


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
class LoRA(StaticStrategyMixin):
    """Trains ~1% of the parameters; the base stays shared, so many adapters can serve one base."""

    Config = LoRAConfig
    default_lr = 5e-4

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import LoraConfig, TaskType, get_peft_model

        cfg = self.config
        name = type(model).__name__
        task_type = TaskType.TOKEN_CLS if "TokenClassification" in name else TaskType.QUESTION_ANS if "QuestionAnswering" in name else TaskType.SEQ_CLS
        peft_config = LoraConfig(
            task_type=task_type,
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
