"""Temporary module surgery that lets one Hugging Face model run from any layer boundary.

``start_at(b)`` swaps the embeddings for a pass-through and keeps only layers ``b..L-1``, so
``model(inputs_embeds=cached_states, attention_mask=mask)`` runs the model's own mask handling,
upper layers, pooler, head and loss on cached boundary states. ``restore()`` puts the original
modules back (the parameters are the same objects throughout, so the optimizer never notices).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from torch import nn

from thawkit.models.layout import BlockLayout, find_backbone_prefix, find_layer_list


class PassThroughEmbeddings(nn.Module):
    """Returns ``inputs_embeds`` unchanged: the cached states already are the boundary's input."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        states = kwargs.get("inputs_embeds")
        if states is None and len(args) > 1:  # DistilBERT passes (input_ids, inputs_embeds, ...)
            states = args[1]
        return states


class ModelSurgery:
    def __init__(self, model: nn.Module, layout: BlockLayout) -> None:
        self.model = model
        layer_list_name, self.layers = find_layer_list(model)
        parent_name, self.layer_attr = layer_list_name.rsplit(".", 1)
        self.layer_parent = model.get_submodule(parent_name)
        self.full_layers = list(self.layers)
        backbone_prefix = find_backbone_prefix(model, layer_list_name)
        self.backbone = model.get_submodule(backbone_prefix)
        self.embeddings = getattr(self.backbone, "embeddings", None)
        self.num_layers = layout.num_layers
        self.boundary: int | None = None

    @property
    def hidden_size(self) -> int:
        config = self.model.config
        return int(getattr(config, "hidden_size", None) or getattr(config, "dim"))

    @property
    def supported(self) -> bool:
        return self.embeddings is not None

    def _set_layers(self, layers: list[nn.Module]) -> None:
        setattr(self.layer_parent, self.layer_attr, nn.ModuleList(layers))

    def start_at(self, boundary: int) -> None:
        """Run from layer ``boundary`` on cached states (``num_layers``: only what follows the encoder)."""
        self.backbone.embeddings = PassThroughEmbeddings()
        self._set_layers(self.full_layers[boundary:])
        self.boundary = boundary

    def restore(self) -> None:
        self.backbone.embeddings = self.embeddings
        self._set_layers(self.full_layers)
        self.boundary = None

    @contextmanager
    def bottom_only(self, top: int) -> Iterator[None]:
        """Run only the embeddings and layers below ``top`` (to compute boundary states)."""
        self._set_layers(self.full_layers[:top])
        try:
            yield
        finally:
            self._set_layers(self.full_layers if self.boundary is None else self.full_layers[self.boundary :])

    @contextmanager
    def restored(self) -> Iterator[None]:
        """The full model for a moment (saving, plain-path evaluation), then back to the boundary."""
        boundary = self.boundary
        if boundary is None:
            yield
            return
        self.restore()
        try:
            yield
        finally:
            self.start_at(boundary)
