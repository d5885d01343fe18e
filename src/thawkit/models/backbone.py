"""Resolve a model name (alias, local path or hub id) and load it through the Auto classes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thawkit.errors import ConfigError
from thawkit.models.packaged import converted_folder, package_folder, packaged

DEFAULT_MODEL = "minilm-l6"
DEFAULT_DECODER = "smollm2-135m"  # what prompting prompts when no --model is given

def resolve_model_path(name: str) -> str:
    """Return what ``from_pretrained`` should receive for ``name``.

    An alias (``minilm-l6``, ``smollm2-135m``) or its hub id resolves to the folder its package ships
    (the embedded decoder: its GGUF file converted once into a cached folder); a thawkit feature-head
    run folder to its ``backbone/`` (the body it trained or kept); another local path is returned as
    is; anything else is passed through as a hub id (works when online).
    """
    found = packaged(name)
    if found is None:
        body = Path(name) / "backbone"
        if (Path(name) / "thawkit_head.json").is_file() and (body / "config.json").is_file():
            return str(body)  # a feature-head run (frozen head, fewshot): its (adapted) body is the model
        return name
    alias, model = found
    folder = package_folder(alias, model, required=name == alias)
    if folder is None:
        return name  # a hub id whose package is not installed: let the hub try
    if model.gguf_file is not None:
        return str(converted_folder(alias, model, folder))
    return str(folder / str(model.folder))


def portable_model_name(name: str) -> str:
    """What an adapter should name as its base (``base_model_name_or_path``, what stock ``peft``
    loads): the hub id of a packaged alias whose weights are the Hub's (loads anywhere online); for a
    de-quantized GGUF alias the converted folder (the Hub's weights differ from the ones trained on);
    otherwise the name exactly as the user gave it."""
    found = packaged(name)
    if found is None:
        return name
    return found[1].hub_id if found[1].same_weights_as_hub else resolve_model_path(name)


def lineage_model_name(name: str) -> str:
    """What a model card names as the base model: the Hub model an alias comes from (quantized or not)."""
    found = packaged(name)
    return found[1].hub_id if found is not None else name


def lineage_note(name: str) -> str | None:
    """One line for the model card where the base is not the Hub checkpoint itself."""
    found = packaged(name)
    if found is None or found[1].same_weights_as_hub:
        return None
    return (f"the base is {found[1].hub_id} de-quantized from {found[1].gguf_file} (package {found[1].pip_name}), "
            "not the Hub's unquantized weights; the adapter names the converted folder as its base")


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


def load_task_model(auto_cls: Any, name: str, **kwargs: Any) -> Any:
    """A pretrained backbone with a task head (``AutoModelFor...``), its backbone really pretrained:
    some heads name their backbone differently from the checkpoint's (Llama's question-answering
    head calls it ``transformer``, a causal-LM checkpoint ``model``), so transformers would leave the
    whole backbone randomly initialized. Then the backbone is loaded on its own and copied in."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized head" report is expected here
    try:
        model, info = from_pretrained_checked(auto_cls, name, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and any(key.startswith(prefix + ".") for key in info.get("missing_keys", [])):
        from transformers import AutoModel

        backbone = from_pretrained_checked(AutoModel, name)
        getattr(model, prefix).load_state_dict(backbone.state_dict())
    return model


def load_tokenizer(name: str) -> Any:
    """The model's tokenizer, with a padding token: most decoders' tokenizers have none, and batches
    need one (their end-of-text token pads; attention masks keep it out of every result)."""
    from transformers import AutoTokenizer

    tokenizer = from_pretrained_checked(AutoTokenizer, name)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
        if fallback is None:
            raise ConfigError(f"{name}: the tokenizer has no padding, end-of-text or unknown token to pad batches with; "
                              "fix: pass --tokenizer with one that has, or add a pad token to it")
        tokenizer.pad_token = fallback
    return tokenizer


def align_pad_token(model: Any, tokenizer: Any) -> None:
    """Decoder heads (``...ForSequenceClassification``) find each example's last real token through
    ``config.pad_token_id``: make it the tokenizer's."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id


def load_sequence_classifier(
    name: str,
    num_labels: int,
    id2label: dict[int, str],
    problem_type: str,
) -> Any:
    """A pretrained backbone with a freshly initialised classification head."""
    from transformers import AutoModelForSequenceClassification

    return load_task_model(AutoModelForSequenceClassification, name, num_labels=num_labels,
                           id2label={int(i): str(label) for i, label in id2label.items()},
                           label2id={str(label): int(i) for i, label in id2label.items()}, problem_type=problem_type)


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


def copy_sentence_transformers_modules(source: Path, target: Path, max_length: int | None = None,
                                       normalize: bool | None = None) -> None:
    """Make ``target`` (a saved copy of the transformer in ``source``) a sentence-transformers folder
    as ``source`` is: its modules (modules.json, 1_Pooling/..., a Normalize folder) and configs,
    ``max_seq_length`` set to ``max_length`` when given (the length the copy was trained at);
    ``normalize`` False leaves the Normalize module out (the embeddings a head read unnormalised)."""
    import shutil

    if not (source / "modules.json").exists():
        return
    modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
    if normalize is False:
        modules = [m for m in modules if not str(m.get("type", "")).endswith(".Normalize")]
    (target / "modules.json").write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
    for entry in modules:
        folder = entry.get("path")
        if folder and (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder, dirs_exist_ok=True)
        elif folder:  # a module without files (Normalize): its folder, as sentence-transformers' own save writes it
            (target / folder).mkdir(parents=True, exist_ok=True)
    for name in ("sentence_bert_config.json", "config_sentence_transformers.json"):
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    settings = target / "sentence_bert_config.json"
    if max_length is not None and settings.exists():
        values = json.loads(settings.read_text(encoding="utf-8"))
        values["max_seq_length"] = int(max_length)
        settings.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")


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


def load_peft_run(base: Any, run_folder: Path) -> Any:
    """An adapter run on its freshly loaded base: the padding token the run trained with (a decoder's
    base config has none) from the config saved beside the adapter, then the adapter."""
    from peft import PeftModel

    saved = Path(run_folder) / "config.json"
    pad = json.loads(saved.read_text(encoding="utf-8")).get("pad_token_id") if saved.exists() else None
    if getattr(base.config, "pad_token_id", None) is None and pad is not None:
        base.config.pad_token_id = pad
    if not (Path(run_folder) / "adapter_model.safetensors").exists():  # PEFT would fall back to unpickling adapter_model.bin
        raise ConfigError(f"{run_folder}: no adapter_model.safetensors; thawkit loads adapters from safetensors only; fix: "
                          "pass a run folder written by thawkit")
    return PeftModel.from_pretrained(base, str(run_folder))


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
