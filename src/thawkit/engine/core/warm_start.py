"""Warm start: a planned model begins from a finished run's weights (``thawkit update``).

The planned model is built as for any run (the base model, then the strategy's freezing or
adapters) and every tensor the finished run also holds is copied in, matched by name once the
wrappers' renamings are undone: PEFT's ``base_model.model.`` prefix, a LoRA layer's
``base_layer``, a head's ``modules_to_save.default`` copy. So a full run continues as a full run, a
LoRA run continues its own adapter on the same base (a merged one: its merged weights under a
fresh adapter, merged again at the end), a feature-head run continues from its body. A tensor
that grew keeps its old values in its leading block and the rest as the planned model initialised
it: an output layer that gained classes (the old classes' ids come first), an AdaLoRA adapter whose
ranks were pruned below the initial rank (the new ranks start with E = 0, adding nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from thawkit.errors import ConfigError

_PEFT_PREFIX = "base_model.model."
_RENAMES = ((".base_layer.", "."), (".modules_to_save.default.", "."))


def canonical_name(name: str) -> str:
    """A parameter's name with PEFT's wrappers taken out (the name in the plain model)."""
    name = name.removeprefix(_PEFT_PREFIX)
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return name


def _skipped(name: str) -> bool:
    # PEFT keeps the untouched original of a ``modules_to_save`` head beside its trained copy.
    return ".original_module." in name


@dataclass
class WarmStart:
    """A finished run's tensors by canonical name; ``source`` names the run (for messages and facts)."""

    source: str
    state: dict[str, torch.Tensor]

    @classmethod
    def from_model(cls, source: str, model: torch.nn.Module) -> "WarmStart":
        state = {canonical_name(name): tensor.detach().clone() for name, tensor in model.state_dict().items() if not _skipped(name)}
        return cls(source, state)

    def apply(self, model: torch.nn.Module) -> dict[str, Any]:
        """Copy every matching tensor into ``model``; the facts thawkit.json records. Refuses a model
        that takes nothing from the run (a different architecture)."""
        copied, grown, fresh = 0, [], 0
        used: set[str] = set()
        with torch.no_grad():
            for name, tensor in model.state_dict(keep_vars=True).items():
                if _skipped(name):
                    continue
                key = canonical_name(name)
                old = self.state.get(key)
                if old is None:
                    fresh += 1
                    continue
                target = tensor.data if isinstance(tensor, torch.nn.Parameter) else tensor
                if old.shape == target.shape:
                    target.copy_(old.to(target.dtype))
                    copied += 1
                elif old.dim() == target.dim() and all(o <= n for o, n in zip(old.shape, target.shape)):
                    # A grown output layer (old classes first), or an AdaLoRA adapter pruned below its initial rank:
                    # the old values fill the leading block, the rest keeps its initialisation (AdaLoRA's zero E
                    # makes the extra ranks add nothing until they learn).
                    target[tuple(slice(0, o) for o in old.shape)].copy_(old.to(target.dtype))
                    grown.append(name)
                else:
                    fresh += 1
                    continue
                used.add(key)
        if not copied and not grown:
            raise ConfigError(f"{self.source}: none of the run's weights fit the planned model; fix: update a run with its own "
                              "base model and strategy (thawkit update takes them from the run)")
        return {"from": self.source, "tensors_copied": copied, "tensors_grown": grown, "tensors_fresh": fresh,
                "run_tensors_unused": len(set(self.state) - used)}


__all__ = ["WarmStart", "canonical_name"]
