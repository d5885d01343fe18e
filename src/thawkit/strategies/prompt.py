"""Prompt learning through ``peft``: the model's weights stay as they are and only a few virtual
tokens (and the task head) train. ``method`` picks how: ``prompt`` learns the virtual tokens'
embeddings (prompt tuning, Lester et al. 2021), ``p-tuning`` generates them with a small encoder
(Liu et al. 2021), ``prefix`` learns keys and values in every layer (prefix tuning, Li & Liang 2021): peft passes them
as ``past_key_values``, which transformers 5 models no longer take, so it is refused until they do.
The inputs change (virtual tokens prepended), so the frozen-layer cache does not apply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

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
    init: Literal["auto", "vocab", "random"] = Field(
        default="auto", description="where prompt tuning's virtual tokens start: vocab (embeddings of randomly drawn vocabulary "
        "tokens, peft's SAMPLE_VOCAB), random (peft's random init); auto: vocab for generation, random for task heads",
        json_schema_extra={"flag": "--prompt-init"})

    @model_validator(mode="after")
    def _init_for_prompt_tuning_only(self) -> "PromptConfig":
        if self.init != "auto" and self.method != "prompt":
            raise ValueError(f"--prompt-init sets where prompt tuning's virtual tokens start; --prompt-method {self.method} "
                             "does not take it; fix: drop --prompt-init, or --prompt-method prompt")
        return self


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

    _task_type: str | None = None

    def init_for(self, task_type: str | None) -> str:
        """``auto``: a language model's virtual tokens start as real token embeddings (random vectors
        off its embedding scale took smollm2-135m below its zero-shot BLEU on E2E NLG); a task head's
        as peft's random init, measured on classification (docs/defaults.md)."""
        given = self.config.init  # type: ignore[attr-defined]
        return given if given != "auto" else ("vocab" if task_type == "CAUSAL_LM" else "random")

    def peft_config(self, model: nn.Module, task_type: str | None) -> Any:
        from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, PromptTuningInit

        cfg: Any = self.config
        if cfg.method == "prompt":
            init = {"vocab": PromptTuningInit.SAMPLE_VOCAB, "random": PromptTuningInit.RANDOM}[self.init_for(task_type)]
            return PromptTuningConfig(task_type=task_type, num_virtual_tokens=cfg.virtual_tokens, prompt_tuning_init=init,
                                      modules_to_save=heads_to_save(model, task_type))
        kind = {"p-tuning": PromptEncoderConfig, "prefix": PrefixTuningConfig}[cfg.method]
        return kind(task_type=task_type, num_virtual_tokens=cfg.virtual_tokens, modules_to_save=heads_to_save(model, task_type))

    def resolved_options(self) -> dict:
        options = super().resolved_options()
        if options["method"] == "prompt" and self._task_type is not None:
            options["init"] = self.init_for(self._task_type)  # thawkit.json records how the tokens started
        return options

    def prepare(self, model: nn.Module, peft_task_type: str | None = None) -> nn.Module:
        import inspect

        backbone = getattr(model, getattr(model, "base_model_prefix", ""), model)
        if self.config.method == "prefix" and "past_key_values" not in inspect.signature(backbone.forward).parameters:  # type: ignore[attr-defined]
            raise ConfigError(f"--prompt-method prefix needs a model whose forward takes past_key_values, which peft's prefix "
                              f"tuning passes; {type(backbone).__name__} does not (transformers 5 models take `cache`); "
                              "fix: --prompt-method prompt or p-tuning")
        self._task_type = peft_task_type
        return super().prepare(model, peft_task_type)
