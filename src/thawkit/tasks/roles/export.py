"""ExportRole: what ``thawkit export --onnx`` traces, and the outputs it names."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch import nn


class ExportRole:
    # The exported outputs, each with its dynamic axes (batch; and sequence for per-token outputs).
    onnx_outputs: ClassVar[dict[str, tuple[str, ...]]] = {"logits": ("batch",)}
    onnx_token_types: ClassVar[bool] = True  # the graph takes token_type_ids (sentence pairs)

    def onnx_module(self, model: "nn.Module") -> "nn.Module":
        """What ONNX export traces: forward(input_ids, attention_mask[, token_type_ids]) returning
        ``onnx_outputs`` as a tuple."""
        from thawkit.models.onnx import outputs_as_tuple

        return outputs_as_tuple(model, tuple(self.onnx_outputs), self.onnx_token_types)
