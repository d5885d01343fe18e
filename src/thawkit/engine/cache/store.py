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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from thawkit.models.hardware import fast_bf16_available
from thawkit.models.layout import BlockLayout

if TYPE_CHECKING:
    from thawkit.engine.cache.surgery import ModelSurgery

STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}  # bf16 stored as raw bits


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
    """A split's states at every boundary a run needs, and how they were obtained."""

    states: dict[int, LayerStates]
    seconds: float = 0.0
    reused: bool = False

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.states.values())

    @property
    def memory_mapped(self) -> bool:
        return any(isinstance(s.data, np.memmap) for s in self.states.values())


def _hash_tensor(digest: Any, tensor: torch.Tensor) -> None:
    digest.update(str(tuple(tensor.shape)).encode())
    digest.update(str(tensor.dtype).encode())
    digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())


def block_digests(model: nn.Module, layout: BlockLayout, up_to_layer: int) -> list[str]:
    """Digest of the embeddings (with their buffers), then of each layer below ``up_to_layer``.

    The key of boundary b combines the first b + 1 digests: the weights that shape its states.
    """
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    digests = []
    for block in ["embeddings", *(f"layer.{i}" for i in range(up_to_layer))]:
        digest = hashlib.sha256()
        for name in sorted(layout.params[block]):
            # Names without the wrapper's prefix (bert. / backbone. / base_model.model.): the same
            # weights give the same key whichever head sits on top.
            marker = "embeddings" if block == "embeddings" else f"layer.{block.split('.')[1]}."
            digest.update(name[name.find(marker):].encode() if marker in name else name.encode())
            _hash_tensor(digest, params[name])
        if block == "embeddings":
            for name in sorted(buffers):  # position ids, token type ids
                if "embeddings" in name:
                    _hash_tensor(digest, buffers[name])
        digests.append(digest.hexdigest())
    return digests


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


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class FeatureStore:
    """One boundary's states per entry, on disk (atomic writes) and in a small in-process table.

    Entries are per boundary so that strategies share them: a gradual run's pass serves a later
    partial run at any of its boundaries.
    """

    _memory: dict[str, LayerStates] = {}

    def __init__(self, root: Path | None = None, ram_budget_mb: float = 4096) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.ram_budget_mb = ram_budget_mb
        self.used: list[str] = []  # keys this store served or wrote, in order (what a warm-up ships)

    def load(self, key: str, storage: str) -> LayerStates | None:
        if key in self._memory:
            self.used.append(key)
            return self._memory[key]
        folder = self.root / key
        if not (folder / "complete").exists():
            return None
        self.used.append(key)
        mmap = (folder / "states.npy").stat().st_size / 2**20 > self.ram_budget_mb
        states = LayerStates(
            np.load(folder / "states.npy", mmap_mode="r" if mmap else None), np.load(folder / "offsets.npy"), storage
        )
        self._remember(key, states)
        return states

    def save(self, key: str, states: LayerStates, info: dict[str, Any]) -> LayerStates:
        """Write under a temporary name and rename, so a crash never leaves a half entry."""
        self.used.append(key)
        folder = self.root / key
        if not (folder / "complete").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self.remove_stale_partials()
            partial = self.root / f".{key}.{os.getpid()}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            np.save(partial / "offsets.npy", states.offsets)
            np.save(partial / "states.npy", states.data)
            (partial / "info.json").write_text(json.dumps({**info, "storage": states.dtype, "created": time.time()}, indent=2))
            (partial / "complete").write_text("ok")
            try:
                partial.rename(folder)
            except OSError:  # another process won the race with an identical entry
                shutil.rmtree(partial, ignore_errors=True)
        if states.nbytes / 2**20 > self.ram_budget_mb:
            # Over the budget: drop the in-RAM array and use the memory-mapped file instead.
            states = LayerStates(np.load(folder / "states.npy", mmap_mode="r"), states.offsets, states.dtype)
        self._remember(key, states)
        return states

    def bundle(self, key: str) -> dict[str, Any]:
        """One entry this store served or wrote, as arrays and facts, to ship to another machine
        (Ray's object store). It may be known only in memory (computed earlier in this process
        for another cache folder): the arrays are the same."""
        info_file = self.root / key / "info.json"
        info = json.loads(info_file.read_text()) if info_file.exists() else {}
        states = self._memory.get(key) or self.load(key, info.get("storage", "float32"))
        if states is None:
            raise KeyError(key)
        return {"states": np.asarray(states.data), "offsets": np.asarray(states.offsets), "info": info, "storage": states.dtype}

    def install(self, key: str, bundle: dict[str, Any]) -> None:
        """An entry shipped from elsewhere, written here unless already present."""
        if not (self.root / key / "complete").exists():
            states = LayerStates(np.asarray(bundle["states"]), np.asarray(bundle["offsets"]), bundle["storage"])
            self.save(key, states, bundle["info"])

    def remove_stale_partials(self) -> list[Path]:
        """Temporaries of writers that died (killed during the cached pass): never loaded, removed
        here. A live writer's temporary (its pid still running) is left alone."""
        removed = []
        for partial in self.root.glob(".*.partial"):
            try:
                pid = int(partial.name.rsplit(".", 2)[-2])
            except ValueError:
                continue
            if not _process_alive(pid):
                shutil.rmtree(partial, ignore_errors=True)
                removed.append(partial)
        return removed

    def _remember(self, key: str, states: LayerStates) -> None:
        # A few dozen boundaries: enough for the strategies of one comparison to share their pass.
        if len(self._memory) >= 32:
            self._memory.pop(next(iter(self._memory)))
        self._memory[key] = states

    @classmethod
    def forget_in_memory(cls) -> None:
        cls._memory.clear()
