"""Temporary module surgery that lets one Hugging Face model run from any layer boundary.

``start_at(b)`` keeps only layers ``b..L-1`` and makes the embeddings hand over cached states, so
the model's own mask handling, upper layers, pooler or final norm, head and loss run on cached
boundary states. An encoder takes them as ``inputs_embeds`` through a pass-through embeddings
module. A decoder keeps its ``input_ids`` (its classification head finds each example's last real
token from them) while its token embedding returns the staged states (GPT-2 also adds no position
embeddings and no embedding dropout: the states already hold both). ``call_inputs`` builds the
model's keyword arguments either way. ``restore()`` puts the original modules back (the parameters
are the same objects throughout, so the optimizer never notices).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from thawkit.models.layout import BlockLayout, find_backbone_prefix, find_layer_list


class PassThroughEmbeddings(nn.Module):
    """Returns ``inputs_embeds`` unchanged: the cached states already are the boundary's input."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        states = kwargs.get("inputs_embeds")
        if states is None and len(args) > 1:  # DistilBERT passes (input_ids, inputs_embeds, ...)
            states = args[1]
        return states


class StagedEmbeddings(nn.Module):
    """A decoder's token embedding during the cached path: returns the states staged for the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.states: torch.Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.states is None:
            raise RuntimeError("the cached path ran a forward with no states staged")
        return self.states


class NoPositions(nn.Module):
    """GPT-2's absolute position embeddings during the cached path: the states already include them."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*position_ids.shape, self.hidden, device=position_ids.device)


# Decoders: (token embedding attribute, modules replaced while cached, the module whose output is boundary 0).
_DECODER_EMBEDDINGS = (("embed_tokens", (), "embed_tokens"), ("wte", ("wpe", "drop"), "drop"), ("embed_in", ("emb_dropout",), "emb_dropout"))


class ModelSurgery:
    def __init__(self, model: nn.Module, layout: BlockLayout) -> None:
        self.model = model
        layer_list_name, self.layers = find_layer_list(model)
        parent_name, self.layer_attr = layer_list_name.rsplit(".", 1)
        self.layer_parent = model.get_submodule(parent_name)
        self.full_layers = list(self.layers)
        backbone_prefix = find_backbone_prefix(model, layer_list_name)
        self.backbone = model.get_submodule(backbone_prefix)
        self.num_layers = layout.num_layers
        self.boundary: int | None = None
        self.staged = StagedEmbeddings()
        self.decoder: tuple[str, tuple[str, ...]] | None = None
        self.originals: dict[str, nn.Module] = {}
        self.embeddings = getattr(self.backbone, "embeddings", None)  # whose output is boundary 0
        if self.embeddings is None:
            for token_attr, replaced, boundary_zero in _DECODER_EMBEDDINGS:
                if hasattr(self.backbone, token_attr) and all(hasattr(self.backbone, r) for r in replaced):
                    self.decoder = (token_attr, replaced)
                    self.embeddings = getattr(self.backbone, boundary_zero)
                    self.originals = {name: getattr(self.backbone, name) for name in (token_attr, *replaced)}
                    break

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
        """Run from layer ``boundary`` on cached states (``num_layers``: only what follows the layers)."""
        if self.decoder is None:
            self.backbone.embeddings = PassThroughEmbeddings()
        else:
            token_attr, replaced = self.decoder
            setattr(self.backbone, token_attr, self.staged)
            for name in replaced:
                setattr(self.backbone, name, NoPositions(self.hidden_size) if name == "wpe" else nn.Identity())
        self._set_layers(self.full_layers[boundary:])
        self.boundary = boundary

    def restore(self) -> None:
        if self.decoder is None:
            self.backbone.embeddings = self.embeddings
        else:
            for name, module in self.originals.items():
                setattr(self.backbone, name, module)
            self.staged.states = None
        self._set_layers(self.full_layers)
        self.boundary = None

    def call_inputs(self, embeds: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The model's keyword arguments for a batch of cached states (``(batch, tokens, hidden)``, padded on the right)."""
        if self.decoder is None or input_ids is None:
            return {"inputs_embeds": embeds, "attention_mask": mask}
        self.staged.states = embeds
        return {"input_ids": input_ids, "attention_mask": mask}

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
