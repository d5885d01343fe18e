"""Backbone loading and the block layout (embeddings, encoder layers, head) of a model."""

from thawkit.models.backbone import DEFAULT_MODEL, resolve_model_path
from thawkit.models.layout import BlockLayout

__all__ = ["DEFAULT_MODEL", "resolve_model_path", "BlockLayout"]
