"""Frozen-layer cache: run the frozen bottom of the network once, keep its outputs, reuse them.

For every example only the real tokens are stored (no padding), flat: ``(total_tokens, hidden)``
plus offsets. A boundary ``b`` holds the input of encoder layer ``b`` (``b = num_layers``: the last
layer's output), i.e. ``hidden_states[b]`` of a Hugging Face forward pass. One pass yields every
boundary a run needs, so gradual unfreezing moves its boundary down without another pass.

Entries are keyed by a fingerprint of the frozen weights, the tokenizer, the max length, the
boundaries, the pooling and the data itself; they live as ``.npy`` files under the cache folder
(``$THAWKIT_CACHE_DIR`` or ``~/.cache/thawkit/features``), are written atomically, and are
memory-mapped instead of loaded when they exceed the RAM budget.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import torch
from torch import nn

from thawkit.models.layout import BlockLayout

if TYPE_CHECKING:
    from thawkit.engine.surgery import ModelSurgery

STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}  # bf16 stored as raw bits


def fast_bf16_available() -> bool:
    """bf16 matmuls in hardware: a CUDA GPU that supports them, or a CPU with AVX512-BF16 / AMX."""
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_storage(cache_dtype: str) -> str:
    if cache_dtype != "auto":
        return cache_dtype
    return "bfloat16" if fast_bf16_available() else "float32"


def default_cache_dir() -> Path:
    return Path(os.environ.get("THAWKIT_CACHE_DIR", Path.home() / ".cache" / "thawkit" / "features"))


@dataclass
class LayerStates:
    """One boundary's states for one split: ``get(i)`` is example i's ``(tokens, hidden)`` tensor."""

    data: np.ndarray  # (total_tokens, hidden), float32 / float16 / uint16 (bf16 bits)
    offsets: np.ndarray  # (n + 1,) int64
    dtype: str

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, index: int) -> torch.Tensor:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        chunk = torch.from_numpy(np.array(self.data[start:end]))  # a copy: memmaps are read-only
        if self.dtype == "bfloat16":
            chunk = chunk.view(torch.int16).view(torch.bfloat16)
        return chunk.float()

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


@dataclass
class CacheEntry:
    key: str
    states: dict[int, LayerStates]
    seconds: float = 0.0
    reused: bool = False
    memory_mapped: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.states.values())


def _hash_tensor(digest: Any, tensor: torch.Tensor) -> None:
    digest.update(str(tuple(tensor.shape)).encode())
    digest.update(str(tensor.dtype).encode())
    digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())


def weights_fingerprint(model: nn.Module, layout: BlockLayout, up_to_layer: int) -> str:
    """Hash of every weight that shapes the cached states: embeddings and layers below the boundary."""
    digest = hashlib.sha256()
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    blocks = ["embeddings", *(f"layer.{i}" for i in range(up_to_layer))]
    for name in sorted(layout.names(blocks)):
        digest.update(name.encode())
        _hash_tensor(digest, params[name])
    for name in sorted(buffers):  # position ids, token type ids
        if "embeddings" in name:
            _hash_tensor(digest, buffers[name])
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    digest.update(str(len(tokenizer)).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the whole fast tokenizer (vocabulary, normalizer, ...): content, not path
        digest.update(backend.to_str().encode())
    else:
        digest.update(str(getattr(tokenizer, "name_or_path", "")).encode())
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


def data_fingerprint(columns: dict[str, list[list[int]]]) -> str:
    digest = hashlib.sha256()
    for name in sorted(columns):
        digest.update(name.encode())
        for row in columns[name]:
            digest.update(np.asarray(row, dtype=np.int64).tobytes())
            digest.update(b"|")
    return digest.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@torch.inference_mode()
def compute_states(
    surgery: "ModelSurgery",
    features: list[dict[str, list[int]]],
    boundaries: list[int],
    first_token_only: bool,
    storage: str,
    batch_size: int = 64,
    autocast_bf16: bool = False,
) -> dict[int, LayerStates]:
    """One pass over ``features`` (tokenized examples) through the frozen bottom, in eval mode.

    Examples are batched in length order so batches carry almost no padding; only the layers
    below the highest boundary run.
    """
    backbone = surgery.backbone
    lengths = [1 if first_token_only else len(f["input_ids"]) for f in features]
    offsets = np.zeros(len(features) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    hidden_size = surgery.hidden_size
    outputs = {b: np.empty((int(offsets[-1]), hidden_size), dtype=STORAGE_DTYPES[storage]) for b in boundaries}
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    # Forward hooks capture each boundary's input: the embeddings' output (b = 0) or layer b-1's.
    # (output_hidden_states is not used: transformers installs its recorders lazily, on the layers
    # present at the first call, which misses layers swapped back in later.)
    captured: dict[int, torch.Tensor] = {}

    def capture(boundary: int) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            captured[boundary] = output[0] if isinstance(output, (tuple, list)) else output

        return hook

    handles = [
        (surgery.embeddings if b == 0 else surgery.full_layers[b - 1]).register_forward_hook(capture(b))
        for b in boundaries
    ]
    try:
        with surgery.bottom_only(max(boundaries)):
            for start in range(0, len(order), batch_size):
                batch_ids = order[start : start + batch_size]
                width = max(len(features[i]["input_ids"]) for i in batch_ids)
                inputs: dict[str, torch.Tensor] = {}
                for column in ("input_ids", "token_type_ids"):
                    if column in features[batch_ids[0]]:
                        rows = [list(features[i][column]) + [0] * (width - len(features[i][column])) for i in batch_ids]
                        inputs[column] = torch.tensor(rows, dtype=torch.long, device=device)
                inputs["attention_mask"] = torch.tensor(
                    [[1] * len(features[i]["input_ids"]) + [0] * (width - len(features[i]["input_ids"])) for i in batch_ids],
                    dtype=torch.long,
                    device=device,
                )
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
                    backbone(**inputs)
                for boundary in boundaries:
                    states = captured[boundary]  # (batch, width, hidden)
                    if storage == "bfloat16":
                        states_np = states.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
                    else:
                        states_np = states.float().cpu().numpy().astype(STORAGE_DTYPES[storage], copy=False)
                    for row, index in enumerate(batch_ids):
                        outputs[boundary][offsets[index] : offsets[index + 1]] = states_np[row, : lengths[index]]
    finally:
        for handle in handles:
            handle.remove()
        backbone.train(was_training)
    return {b: LayerStates(outputs[b], offsets, storage) for b in boundaries}


class FeatureStore:
    """Cache entries on disk (atomic writes) plus a small in-process table for reuse within a process."""

    _memory: dict[str, CacheEntry] = {}

    def __init__(self, root: Path | None = None, ram_budget_mb: float = 4096) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.ram_budget_mb = ram_budget_mb

    def path(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str, boundaries: Iterable[int], storage: str) -> CacheEntry | None:
        if key in self._memory:
            entry = self._memory[key]
            entry.reused = True
            return entry
        folder = self.path(key)
        if not (folder / "complete").exists():
            return None
        total = sum((folder / f"b{b}.npy").stat().st_size for b in boundaries)
        mmap = total / 2**20 > self.ram_budget_mb
        offsets = np.load(folder / "offsets.npy")
        states = {
            b: LayerStates(np.load(folder / f"b{b}.npy", mmap_mode="r" if mmap else None), offsets, storage)
            for b in boundaries
        }
        entry = CacheEntry(key, states, reused=True, memory_mapped=mmap)
        self._remember(entry)
        return entry

    def save(self, entry: CacheEntry) -> None:
        """Write under a temporary name and rename, so a crash never leaves a half entry."""
        folder = self.path(entry.key)
        if (folder / "complete").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".{entry.key}.{os.getpid()}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        first = next(iter(entry.states.values()))
        np.save(partial / "offsets.npy", first.offsets)
        for boundary, states in entry.states.items():
            np.save(partial / f"b{boundary}.npy", states.data)
        (partial / "info.json").write_text(json.dumps({**entry.info, "created": time.time()}, indent=2))
        (partial / "complete").write_text("ok")
        try:
            partial.rename(folder)
        except OSError:  # another process won the race with an identical entry
            shutil.rmtree(partial, ignore_errors=True)
        if entry.nbytes / 2**20 > self.ram_budget_mb:
            # Over the budget: drop the in-RAM arrays and use the memory-mapped files instead.
            for boundary, states in entry.states.items():
                states.data = np.load(folder / f"b{boundary}.npy", mmap_mode="r")
            entry.memory_mapped = True
        self._remember(entry)

    def _remember(self, entry: CacheEntry) -> None:
        # Keep a few entries: enough for the strategies of one comparison to share their pass.
        if len(self._memory) >= 4:
            self._memory.pop(next(iter(self._memory)))
        self._memory[entry.key] = entry

    @classmethod
    def forget_in_memory(cls) -> None:
        cls._memory.clear()
