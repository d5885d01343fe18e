"""What every PEFT method shares: ``peft`` builds the adapted model, marks exactly its trainable
parameters (adapters, prompt embeddings, and the task head listed in ``modules_to_save`` so it
trains and is saved with the adapter), and the plan is that set. Saved runs are stock PEFT adapter
folders (``AutoPeftModelFor...`` loads them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thawkit.errors import ConfigError
from thawkit.models.layout import BlockLayout
from thawkit.strategies.base import Strategy, TrainablePlan

if TYPE_CHECKING:
    from torch import nn


def model_type_of(model: Any) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def targets_from(table: dict[str, list[str]], peft_table: dict[str, list[str]], model: Any, what: str, flag: str) -> list[str]:
    """Modules an adapter goes into: thawkit's table by architecture, else peft's own."""
    model_type = model_type_of(model)
    if model_type in table:
        return list(table[model_type])
    if model_type in peft_table:
        return list(peft_table[model_type])
    raise ConfigError(f"no default {what} for model type {model_type!r}; fix: pass {flag} (module names, comma-separated)")


def heads_to_save(model: Any, task_type: str | None) -> list[str] | None:
    """peft's ``modules_to_save``: a fresh task head trains and is saved beside the adapter; a
    language model's head is the pretrained one (tied to the embeddings in most decoders), which
    stays as it is, as in peft's and TRL's own causal-LM recipes."""
    from thawkit.models.layout import head_module_names

    return None if task_type == "CAUSAL_LM" else head_module_names(model)


def adaptable_module_names(model: nn.Module) -> list[str]:
    """The names (last component) of the layers an adapter can wrap: linear, GPT-2's Conv1D, embeddings."""
    kinds = {"Linear", "Conv1D", "Embedding"}
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if name and type(module).__name__ in kinds})


class PeftStrategy(Strategy):
    """Base of the PEFT strategies: ``peft_config(model, task_type)`` is the one method to write."""

    adapts_with_adapters = True
    trains_all_activations = True  # the backward pass runs through every layer to reach the adapters
    peft_task_types: frozenset[str] | None = None  # the peft task types the method works for (None: any); others are refused

    def peft_config(self, model: nn.Module, task_type: str | None) -> Any:
        raise NotImplementedError(f"strategy {self.name} must define peft_config")

    def prepare(self, model: nn.Module, peft_task_type: str | None = None) -> nn.Module:
        from peft import get_peft_model

        if self.peft_task_types is not None and peft_task_type not in self.peft_task_types:
            raise ConfigError(f"--strategy {self.name} works for peft task types {', '.join(sorted(self.peft_task_types))} "
                              f"only, not {peft_task_type}; fix: use lora, dora or ia3")
        config = self.peft_config(model, peft_task_type)
        try:
            wrapped = get_peft_model(model, config)
        except ValueError as exc:
            targets = getattr(config, "target_modules", None)
            if not targets or "target" not in str(exc).lower():
                raise
            field = getattr(self, "Config").model_fields.get("target_modules")
            flag = (field.json_schema_extra or {}).get("flag", "the target_modules option") if field is not None else "the targets"
            raise ConfigError(f"{flag} {','.join(sorted(targets))}: no such module in {type(model).__name__}; fix: name some of its "
                              f"layers: {', '.join(adaptable_module_names(model))}") from None
        # peft marks exactly what trains: the adapters (or prompt) and the modules_to_save copies of the head.
        self.trainable_names = frozenset(n for n, p in wrapped.named_parameters() if p.requires_grad)
        return wrapped

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        names = getattr(self, "trainable_names", None)
        if names is None:
            raise RuntimeError(f"strategy {self.name}: plan() before prepare()")
        return TrainablePlan(trainable=frozenset(n for block in layout.params.values() for n in block if n in names))


__all__ = ["PeftStrategy", "heads_to_save", "model_type_of", "targets_from"]
