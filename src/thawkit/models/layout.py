"""Which block every parameter belongs to: ``embeddings``, ``layer.0`` .. ``layer.{L-1}``, ``head``.

Strategies speak in blocks; this module maps blocks to parameter names for any encoder (BERT,
RoBERTa, DistilBERT, DeBERTa-v2, MiniLM, ...) and decoder (Llama, Qwen2, Mistral, SmolLM, GPT-2,
GPT-NeoX, ...), also after PEFT has wrapped it. A decoder's final norm sits above its last layer
and belongs to the head, like an encoder's pooler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from thawkit.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

EMBEDDINGS = "embeddings"
HEAD = "head"


def layer_block(index: int) -> str:
    return f"layer.{index}"


@dataclass
class BlockLayout:
    """Blocks in bottom-to-top order and the parameter names in each.

    ``embeddings`` holds every backbone parameter outside the encoder layers (word/position
    embeddings, DeBERTa's relative embeddings); ``head`` holds everything above the last encoder
    layer, including a pooler, since a pooler is task-specific in practice.
    """

    num_layers: int
    params: dict[str, list[str]] = field(default_factory=dict)
    layer_modules: list[nn.Module] = field(default_factory=list, repr=False)
    embeddings_module: nn.Module | None = field(default=None, repr=False)

    @property
    def blocks(self) -> list[str]:
        return [EMBEDDINGS, *(layer_block(i) for i in range(self.num_layers)), HEAD]

    def names(self, blocks: list[str] | set[str]) -> set[str]:
        return {name for block in blocks for name in self.params.get(block, [])}

    def block_of(self, param_name: str) -> str:
        for block, names in self.params.items():
            if param_name in names:
                return block
        raise KeyError(param_name)

    def block_modules(self, block: str) -> list[nn.Module]:
        """Modules whose train/eval mode belongs to ``block`` (used to keep frozen blocks in eval)."""
        if block == EMBEDDINGS:
            return [self.embeddings_module] if self.embeddings_module is not None else []
        if block.startswith("layer."):
            return [self.layer_modules[int(block.split(".")[1])]]
        return []


def find_layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    from torch.nn import ModuleList

    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, ModuleList) and re.search(r"(^|\.)(layer|layers|block|blocks|h)$", name)
    ]
    if not candidates:
        raise ConfigError(
            f"cannot find the layers of {type(model).__name__}; thawkit supports models whose layers sit in a "
            "ModuleList named 'layer', 'layers' or 'h' (BERT, RoBERTa, DistilBERT, DeBERTa, Llama, Qwen2, GPT-2, ...)"
        )
    return max(candidates, key=lambda item: len(item[1]))


def find_backbone_prefix(model: nn.Module, layer_list_name: str) -> str:
    """The module path of the backbone (e.g. ``bert`` or ``base_model.model.roberta``)."""
    prefix_attr = None
    inner = model
    # Unwrap PEFT to read the transformers model's ``base_model_prefix``.
    for _ in range(3):
        prefix_attr = getattr(inner, "base_model_prefix", None)
        if prefix_attr and hasattr(inner, prefix_attr):
            break
        inner = getattr(inner, "model", getattr(inner, "base_model", inner))
    parts = layer_list_name.split(".")
    if prefix_attr and prefix_attr in parts:
        return ".".join(parts[: parts.index(prefix_attr) + 1])
    # Fall back to the layer list's grandparent (``<backbone>.encoder.layer``).
    return ".".join(parts[:-2])


def keep_layers(model: nn.Module, kept: list[int]) -> None:
    """Keep only the encoder layers ``kept`` (indices, bottom to top), in place. The config says the new
    depth, so the model saves and loads as a standard Hugging Face model of that depth."""
    name, layers = find_layer_list(model)
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.rsplit(".", 1)[-1], type(layers)([layers[i] for i in kept]))
    config = getattr(model, "config", None)
    for attribute in ("num_hidden_layers", "n_layers", "n_layer"):
        if config is not None and hasattr(config, attribute):
            setattr(config, attribute, len(kept))


def build_layout(model: nn.Module) -> BlockLayout:
    layer_list_name, layer_list = find_layer_list(model)
    backbone_prefix = find_backbone_prefix(model, layer_list_name)
    layer_pattern = re.compile(rf"^{re.escape(layer_list_name)}\.(\d+)\.")
    layout = BlockLayout(num_layers=len(layer_list), layer_modules=list(layer_list))
    layout.params = {block: [] for block in layout.blocks}
    backbone_dot = backbone_prefix + "." if backbone_prefix else ""
    final_norms = tuple(f"{backbone_dot}{norm}." for norm in FINAL_NORMS)
    for name, _ in model.named_parameters():
        match = layer_pattern.match(name)
        if match:
            layout.params[layer_block(int(match.group(1)))].append(name)
        elif backbone_dot and name.startswith(backbone_dot) and ".pooler." not in name and not name.startswith(final_norms):
            layout.params[EMBEDDINGS].append(name)
        else:
            layout.params[HEAD].append(name)
    modules = dict(model.named_modules())
    # The module whose train/eval mode is the embeddings block's: an encoder's embeddings, GPT-2's
    # embedding dropout, a rotary decoder's token embedding (no dropout).
    layout.embeddings_module = next((modules[f"{backbone_dot}{n}"] for n in EMBEDDING_MODULES if f"{backbone_dot}{n}" in modules), None)
    return layout


# A decoder's norm after its last layer (Llama/Qwen2/Mistral: norm; GPT-2: ln_f; GPT-NeoX: final_layer_norm).
FINAL_NORMS = ("norm", "ln_f", "final_layer_norm", "final_layernorm")
EMBEDDING_MODULES = ("embeddings", "drop", "embed_tokens", "embed_in")


def routable_module_types() -> tuple[type, ...]:
    """The modules peft can route per example in a batch that mixes adapters (its ModulesToSaveWrapper)."""
    from torch import nn

    return (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def head_module_names(model: nn.Module) -> list[str]:
    """The head modules an adapter trains and saves beside it (peft's ``modules_to_save``), by path
    (``bert.pooler.dense``, ``classifier``, ``score``): the leaves, not their containers, and only
    those peft can route per example, so that a batch mixing adapters of one base runs in one pass
    through each adapter's own head copies. A decoder's final norm stays as pretrained (peft's own
    sequence-classification default trains only the score layer too)."""
    layout = build_layout(model)
    modules = dict(model.named_modules())
    leaves = dict.fromkeys(param.rsplit(".", 1)[0] for param in layout.params[HEAD])
    return [name for name in leaves if isinstance(modules.get(name), routable_module_types())]
