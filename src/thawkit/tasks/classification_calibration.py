"""Calibration of a classifier's scores: temperature scaling (Guo et al. 2017, "On Calibration of
Modern Neural Networks"), fitted on validation logits and baked into the output layer.

One temperature T divides every logit: the argmax (and, multi-label, every ``sigmoid >= 0.5``
decision) is unchanged; only the confidence moves. Dividing the last linear layer's weight and bias
by T gives the same logits, so the saved folder is still a standard one and every loader (the stock
pipeline, ``thawkit predict``/``serve``, the ONNX export) reads calibrated scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

MIN_EXAMPLES = 20  # fewer validation predictions than this: no temperature is fitted (too noisy to trust)
_LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))


def _nll(logits: np.ndarray, labels: np.ndarray, multi_label: bool, temperature: float) -> float:
    scaled = torch.from_numpy(logits / temperature).double()
    if multi_label:
        return float(nn.functional.binary_cross_entropy_with_logits(scaled, torch.from_numpy(labels).double()))
    return float(nn.functional.cross_entropy(scaled, torch.from_numpy(labels).long()))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, multi_label: bool) -> tuple[float | None, float, float, str | None]:
    """(T, validation NLL at T = 1, at the fitted T, why none was fitted): the T that minimises the
    negative log-likelihood of ``labels`` (class ids, or a 0/1 matrix for multi-label) under
    ``softmax(logits / T)`` (sigmoid), searched on log T in [0.05, 20] with scipy's bounded scalar
    minimiser. No T (None) where validation has no error or the optimum is at a bound (a split the
    model gets all right wants T -> 0: there is nothing to fit), or where it would lower the NLL by
    less than 0.0001."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    decisions = (logits >= 0).astype(int) if multi_label else logits.argmax(-1)
    if np.array_equal(decisions, np.asarray(labels).astype(int)):
        before = _nll(logits, labels, multi_label, 1.0)
        return None, before, before, "not fitted: the model makes no error on validation (any T below 1 would look better)"
    result = minimize_scalar(lambda log_t: _nll(logits, labels, multi_label, math.exp(log_t)), bounds=_LOG_T_BOUNDS,
                             method="bounded", options={"xatol": 1e-4})
    before = _nll(logits, labels, multi_label, 1.0)
    temperature, after = math.exp(float(result.x)), float(result.fun)
    if min(abs(float(result.x) - bound) for bound in _LOG_T_BOUNDS) < 0.01:
        return None, before, after, (f"not fitted: the validation NLL keeps falling to T = {temperature:.2f}, the search's "
                                     "bound (too few errors on validation to fit a temperature)")
    if before - after < 1e-4:
        return None, before, before, "not needed: the validation scores are calibrated already, NLL would fall by < 0.0001"
    return temperature, before, after, None


def output_layer(model: nn.Module, num_labels: int) -> tuple[str, nn.Linear]:
    """The linear layer that writes the logits: the last ``nn.Linear`` with ``num_labels`` outputs
    (a PEFT model's trained copy, never the ``original_module`` it keeps beside it)."""
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and module.out_features == num_labels
             and "original_module" not in name and "lora_" not in name]
    if not found:
        raise ValueError(f"no linear layer with {num_labels} outputs in {type(model).__name__}")
    return found[-1]


@torch.no_grad()
def bake_temperature(model: nn.Module, num_labels: int, temperature: float) -> str:
    """Divides the output layer's weight and bias by ``temperature``; returns the layer's name."""
    name, layer = output_layer(model, num_labels)
    layer.weight.div_(temperature)
    if layer.bias is not None:
        layer.bias.div_(temperature)
    return name


@dataclass
class TemperatureScaling:
    """A fitted temperature (``temperature`` None: none was fitted, ``reason`` says why); ``apply``
    bakes it into a model; ``facts`` is thawkit.json's ``calibration`` entry."""

    temperature: float | None
    num_labels: int = 0
    nll_before: float | None = None
    nll_after: float | None = None
    examples: int = 0
    reason: str | None = None
    layer: str | None = None

    @classmethod
    def skipped(cls, reason: str) -> "TemperatureScaling":
        return cls(None, reason=reason)

    def apply(self, model: nn.Module) -> None:
        if self.temperature is not None:
            self.layer = bake_temperature(model, self.num_labels, self.temperature)

    @property
    def facts(self) -> dict[str, Any]:
        if self.temperature is None:
            return {"applied": False, "reason": self.reason}
        return {"applied": True, "method": "temperature scaling (logits / T, baked into the output layer)",
                "temperature": self.temperature, "fitted_on": f"validation ({self.examples} examples)",
                "validation_nll": {"before": round(float(self.nll_before or 0.0), 5), "after": round(float(self.nll_after or 0.0), 5)},
                "output_layer": self.layer}


__all__ = ["MIN_EXAMPLES", "TemperatureScaling", "bake_temperature", "fit_temperature", "output_layer"]
