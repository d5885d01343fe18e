"""Prompt learning through ``peft``: the model's weights stay as they are and only a few virtual
tokens (and the task head) train. ``method`` picks how: ``prompt`` learns the virtual tokens'
embeddings (prompt tuning, Lester et al. 2021), ``p-tuning`` generates them with a small encoder
(Liu et al. 2021), ``prefix`` learns keys and values in every layer (prefix tuning, Li & Liang 2021): peft passes them
as ``past_key_values``, which transformers 5 models no longer take, so it is refused until they do.
The inputs change (virtual tokens prepended), so the frozen-layer cache does not apply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from thawkit.errors import ConfigError
from thawkit.strategies.base import StrategyConfig, register_strategy
from thawkit.strategies.peft_base import PeftStrategy, heads_to_save

if TYPE_CHECKING:
    from torch import nn


class PromptConfig(StrategyConfig):
    method: Literal["prompt", "p-tuning", "prefix"] = Field(default="prompt", description="prompt tuning, p-tuning or prefix tuning",
                                                          json_schema_extra={"flag": "--prompt-method"})
    virtual_tokens: int = Field(default=20, gt=0, le=512, description="virtual tokens prepended to every input",
                                json_schema_extra={"flag": "--virtual-tokens"})


@register_strategy("prompt")
class PromptLearning(PeftStrategy):
    """Only virtual tokens and the head train: the smallest adapters, and the slowest to converge."""

    Config = PromptConfig
    # 3e-2 (peft's examples) diverged on smollm2-135m's fresh score head in 15 steps (benchmarks/compare_models.py):
    # models from 50M parameters start 10x lower; small encoders keep 3e-2 (SST-2 2k, MiniLM: docs/defaults.md).
    default_lr = 3e-3
    small_model_lr = 3e-2
    sane_max_lr = 3e-1
    epoch_cost = 0.8
    trainable_share = 0.001
    color = "#7f7f7f"
    order = 9
    # peft prepends virtual tokens for these; its token-classification variant misaligns labels and outputs.
    peft_task_types = frozenset({"SEQ_CLS", "CAUSAL_LM"})
    changes_inputs = True

    def peft_config(self, model: nn.Module, task_type: str | None) -> Any:
        from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig

        cfg: Any = self.config
        kind = {"prompt": PromptTuningConfig, "p-tuning": PromptEncoderConfig, "prefix": PrefixTuningConfig}[cfg.method]
        return kind(task_type=task_type, num_virtual_tokens=cfg.virtual_tokens, modules_to_save=heads_to_save(model, task_type))

    def prepare(self, model: nn.Module, peft_task_type: str | None = None) -> nn.Module:
        import inspect

        backbone = getattr(model, getattr(model, "base_model_prefix", ""), model)
        if self.config.method == "prefix" and "past_key_values" not in inspect.signature(backbone.forward).parameters:  # type: ignore[attr-defined]
            raise ConfigError(f"--prompt-method prefix needs a model whose forward takes past_key_values, which peft's prefix "
                              f"tuning passes; {type(backbone).__name__} does not (transformers 5 models take `cache`); "
                              "fix: --prompt-method prompt or p-tuning")
        return super().prepare(model, peft_task_type)
