"""AdaLoRA through ``peft``: LoRA in SVD form whose rank budget is reallocated during training, from
``init_r`` per module down to ``target_r`` on average, towards the modules that matter (Zhang et al.
2023). The schedule is laid over the run once its length is known: ranks stay for the first
``warmup`` share of the steps, shrink until the last ``final`` share, then stay fixed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from pydantic import Field

from thawkit.models.layout import BlockLayout
from thawkit.strategies.base import StrategyConfig, register_strategy
from thawkit.strategies.lora import detect_target_modules
from thawkit.strategies.peft_base import PeftStrategy, heads_to_save

if TYPE_CHECKING:
    from torch import nn

_PROVISIONAL_STEPS = 1000  # peft needs a step count at construction; plan_schedule sets the run's own


class AdaLoRAConfig(StrategyConfig):
    init_r: int = Field(default=12, gt=0, description="rank every module starts with", json_schema_extra={"flag": "--adalora-init-r"})
    target_r: int = Field(default=8, gt=0, description="average rank the budget shrinks to", json_schema_extra={"flag": "--adalora-target-r"})
    alpha: int = Field(default=16, gt=0, description="scaling numerator", json_schema_extra={"flag": "--lora-alpha"})
    dropout: float = Field(default=0.1, ge=0, lt=1, description="dropout on the adapter input", json_schema_extra={"flag": "--lora-dropout"})
    target_modules: list[str] | None = Field(default=None, description="modules that get adapters (default: LoRA's per architecture)",
                                             json_schema_extra={"flag": "--lora-target-modules"})
    warmup: float = Field(default=0.1, ge=0, lt=1, description="share of the steps before ranks start to shrink",
                          json_schema_extra={"flag": "--adalora-warmup"})
    final: float = Field(default=0.3, ge=0, lt=1, description="share of the steps at the end with the final ranks fixed",
                         json_schema_extra={"flag": "--adalora-final"})
    every: int = Field(default=10, gt=0, description="steps between budget reallocations", json_schema_extra={"flag": "--adalora-every"})


@register_strategy("adalora")
class AdaLoRA(PeftStrategy):
    """LoRA that moves its rank budget to where it helps: a little slower per step than LoRA."""

    Config = AdaLoRAConfig
    default_lr = 1e-3
    sane_max_lr = 3e-2
    epoch_cost = 0.85
    trainable_share = 0.03
    color = "#17becf"
    order = 8

    def peft_config(self, model: nn.Module, task_type: str | None) -> Any:
        from peft import AdaLoraConfig

        cfg: Any = self.config
        return AdaLoraConfig(task_type=task_type, init_r=cfg.init_r, target_r=cfg.target_r, lora_alpha=cfg.alpha,
                             lora_dropout=cfg.dropout, target_modules=cfg.target_modules or detect_target_modules(model),
                             total_step=_PROVISIONAL_STEPS, tinit=0, tfinal=0, deltaT=cfg.every,
                             modules_to_save=heads_to_save(model, task_type))

    def prepare(self, model: nn.Module, peft_task_type: str | None = None) -> nn.Module:
        self.model = super().prepare(model, peft_task_type)
        return self.model

    def plan_schedule(self, total_steps: int, layout: BlockLayout) -> None:
        """The rank schedule over this run's optimizer steps (the allocator reads the same config object)."""
        cfg: Any = self.config
        config = self.model.peft_config["default"]
        config.total_step = max(total_steps, 3)
        config.tinit = int(cfg.warmup * config.total_step)
        config.tfinal = min(int(cfg.final * config.total_step), config.total_step - config.tinit - 1)

    def step_hooks(self) -> tuple[Callable[[Any, int], None], ...]:
        """After every optimizer step, before the gradients are cleared: reallocate the rank budget."""

        def update(model: Any, global_step: int) -> None:
            while not hasattr(model, "base_model") and hasattr(model, "module"):  # DDP / accelerate wrappers
                model = model.module
            model.base_model.update_and_allocate(global_step)

        return (update,)
