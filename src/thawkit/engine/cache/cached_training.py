"""The cached training path: datasets whose rows name their cached states, the collator, and the
runtime that follows the strategy's stages (module surgery) and swaps states in when a batch is used."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from thawkit.engine.cache.store import (
    CacheEntry,
    FeatureStore,
    block_digests,
    cache_key,
    compute_states,
    data_fingerprint,
    tokenizer_fingerprint,
)
from thawkit.engine.cache.surgery import ModelSurgery
from thawkit.models.layout import EMBEDDINGS, BlockLayout
from thawkit.strategies.base import TrainablePlan

if TYPE_CHECKING:
    from thawkit.engine.core.stages import StageController

log = logging.getLogger("thawkit")


def boundary_for(plan: TrainablePlan, layout: BlockLayout) -> int | None:
    """First layer that must run for real: below it everything is frozen. None: embeddings train."""
    blocks = plan.trainable_blocks(layout)
    if EMBEDDINGS in blocks:
        return None
    layers = [int(block.split(".")[1]) for block in blocks if block.startswith("layer.")]
    return min(layers) if layers else layout.num_layers


_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


CACHE_KEYS = ("cache_index", "cache_split")


class SwitchableDataset(torch.utils.data.Dataset):
    """Serves tokenized examples; once the cache is attached, each example also names its row, and
    the trainer swaps in that row's boundary states when the batch is used (``CachedRuntime.materialize``).

    The swap happens at use time, not at fetch time: data loaders fetch a batch ahead, and a stage
    change between fetch and use (gradual unfreezing every N steps) would otherwise feed states of the
    old boundary to the new model. ``order`` lets evaluation sets run in length order (less padding).
    """

    def __init__(self, tokenized: Any, order: list[int] | None = None) -> None:
        self.tokenized = tokenized
        self.rows = [tokenized[i] for i in range(len(tokenized))]
        self.order = order
        self.states: dict[int, Any] = {}
        self.split_id: int | None = None  # position in the runtime's datasets, once cached

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        return [len(self.rows[self._index(i)]["input_ids"]) for i in range(len(self))]

    def _index(self, i: int) -> int:
        return self.order[i] if self.order is not None else i

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self._index(i)
        row = self.rows[index]
        if self.split_id is None:
            return row
        return {**row, "cache_index": index, "cache_split": self.split_id}


class SwitchableCollator:
    """Pads token ids with the task's collator; carries the rows' cache coordinates alongside."""

    def __init__(self, tokenizer: Any, plain: Any = None) -> None:
        self.plain = plain if plain is not None else DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "cache_index" not in features[0]:
            return self.plain(features)
        batch = self.plain([{k: v for k, v in f.items() if k not in CACHE_KEYS} for f in features])
        for key in CACHE_KEYS:
            batch[key] = torch.tensor([f[key] for f in features])
        return batch


def pad_states(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example states (tokens_i, hidden) -> (batch, tokens, hidden) embeds and their attention mask."""
    width = max(row.shape[0] for row in rows)
    embeds = torch.zeros(len(rows), width, rows[0].shape[1])
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        embeds[i, : row.shape[0]] = row
        mask[i, : row.shape[0]] = 1
    return embeds, mask


@dataclass
class CachedRuntime:
    surgery: ModelSurgery
    layout: BlockLayout
    datasets: list[SwitchableDataset]
    entries: dict[str, CacheEntry]
    boundaries: list[int]
    first_token_only: bool
    storage: str
    stage_boundaries: list[int | None] = field(default_factory=list)

    boundary: int | None = None  # where the model starts now; None: the full model on tokens

    def follow(self, plan: TrainablePlan) -> None:
        """Called at every stage change: the model starts at the new boundary (or is whole again)."""
        boundary = boundary_for(plan, self.layout)
        if boundary is None or boundary not in self.boundaries:
            self.surgery.restore()
            boundary = None
        else:
            self.surgery.start_at(boundary)
        self.boundary = boundary

    def materialize(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """A batch as the model needs it now: its rows' states at the current boundary, or tokens."""
        index, split = inputs.pop("cache_index", None), inputs.pop("cache_split", None)
        if index is None or self.boundary is None:
            return inputs
        states = self.datasets[int(split[0])].states[self.boundary]
        embeds, mask = pad_states([states.get(int(i)) for i in index])
        device = inputs["input_ids"].device if "input_ids" in inputs else embeds.device
        batch = {k: v for k, v in inputs.items() if k not in _TOKEN_INPUTS}
        ids = inputs.get("input_ids") if inputs.get("input_ids") is not None and inputs["input_ids"].shape[1] == embeds.shape[1] else None
        return {**batch, **self.surgery.call_inputs(embeds.to(device), mask.to(device), ids)}

    def finish(self) -> None:
        self.surgery.restore()
        self.boundary = None

    def summary(self) -> dict[str, Any]:
        return {
            "used": True,
            "boundaries": self.boundaries,
            "stage_boundaries": self.stage_boundaries,
            "first_token_only": self.first_token_only,
            "storage": self.storage,  # of the training split; evaluation splits are float32
            "bytes_by_split": {split: e.nbytes for split, e in self.entries.items()},
            "pass_seconds": round(sum(e.seconds for e in self.entries.values()), 3),
            "reused": all(e.reused for e in self.entries.values()),
            "bytes": sum(e.nbytes for e in self.entries.values()),
            "megabytes": round(sum(e.nbytes for e in self.entries.values()) / 2**20, 2),
            "memory_mapped": any(e.memory_mapped for e in self.entries.values()),
        }


def _features(dataset: SwitchableDataset) -> list[dict[str, list[int]]]:
    columns = ("input_ids", "token_type_ids")
    return [{c: row[c] for c in columns if c in row} for row in dataset.rows]


def _logits(output: Any) -> torch.Tensor:
    """Classification and token logits, or QA's start/end logits stacked (batch, tokens, 2)."""
    if getattr(output, "logits", None) is not None:
        return output.logits
    return torch.stack([output.start_logits, output.end_logits], dim=-1)


def _self_check(
    surgery: ModelSurgery, dataset: SwitchableDataset, collator: SwitchableCollator, boundary: int, first_token_only: bool
) -> float:
    """Max |logit difference| between the plain model and the cached path on a few examples (fp32)."""
    sample = list(range(min(8, len(dataset))))
    features = [_features(dataset)[i] for i in sample]
    states = compute_states(surgery, features, [boundary], first_token_only, "float32")[boundary]
    model = surgery.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            plain_batch = collator([{k: v for k, v in dataset.rows[i].items() if k in _TOKEN_INPUTS} for i in sample])
            device = next(model.parameters()).device
            plain = _logits(model(**{k: v.to(device) for k, v in plain_batch.items()}))
            surgery.start_at(boundary)
            try:
                embeds, mask = pad_states([states.get(i) for i in range(len(sample))])
                ids = plain_batch["input_ids"].to(device) if plain_batch["input_ids"].shape[1] == embeds.shape[1] else None
                cached = _logits(model(**surgery.call_inputs(embeds.to(device), mask.to(device), ids)))
            finally:
                surgery.restore()
    finally:
        model.train(was_training)
    if plain.dim() == 3:  # token logits: padded positions carry no meaning on either path
        mask = plain_batch["attention_mask"].to(plain.device).bool()
        return float((plain[mask] - cached[mask]).abs().max())
    return float((plain - cached).abs().max())


def _safe_self_check(*args: Any) -> float:
    # Some architectures cannot run from every boundary (DeBERTa-v2's encoder needs at least one
    # layer); any failure means "not exact here", and the run takes the plain path.
    try:
        return _self_check(*args)
    except Exception as exc:  # noqa: BLE001
        log.debug("cached-path self-check failed: %r", exc)
        return float("inf")


def prepare_cached_path(
    controller: StageController,
    model: Any,
    tokenizer: Any,
    datasets: dict[str, SwitchableDataset],
    max_length: int,
    storage: str,
    store: FeatureStore,
    autocast_bf16: bool,
    batch_size: int = 64,
    reachable_stages: int | None = None,
) -> tuple[CachedRuntime | None, str]:
    """Compute (or reuse) the frozen-layer cache if the cached path is exact here; else say why not.

    ``reachable_stages``: how many stages the run will get to (a 3-epoch gradual run never reaches
    layer 0's stage); boundaries of later stages are not computed.
    """
    layout = controller.layout
    stages = controller.num_stages if reachable_stages is None else max(1, min(controller.num_stages, reachable_stages))
    plans = [controller.strategy.plan(layout, s) for s in range(stages)]
    if not any(plan.trainable for plan in plans) and not controller.strategy.fits_head_in_closed_form:
        return None, "nothing trains (the run is the pretrained model, evaluated once): no cache needed"
    stage_boundaries = [boundary_for(plan, layout) for plan in plans]
    boundaries = sorted({b for b in stage_boundaries if b is not None and b > 0})
    if not boundaries:
        return None, "every stage trains the embeddings or the first layer: nothing frozen to cache"
    surgery = ModelSurgery(model, layout)
    if not surgery.supported:
        return None, f"{type(model).__name__} has no embeddings module to bypass"
    # The frozen strategy's head reads only the first token ([CLS]); store just that.
    first_token_only = boundaries == [layout.num_layers] and controller.num_stages == 1
    collator = SwitchableCollator(tokenizer)
    probe = datasets["train"]
    for boundary in boundaries:
        diff = _safe_self_check(surgery, probe, collator, boundary, first_token_only)
        if diff > 1e-4 and first_token_only:
            first_token_only = False
            diff = _safe_self_check(surgery, probe, collator, boundary, False)
        if diff > 1e-4:
            return None, f"{type(model).__name__} cannot run exactly from cached states at layer {boundary} (self-check: {diff:.1e})"
    digests = block_digests(model, layout, max(boundaries))
    tokenizer_id = tokenizer_fingerprint(tokenizer)
    entries: dict[str, CacheEntry] = {}
    for split, dataset in datasets.items():
        # Training states may be bf16; evaluation states are exact fp32, so the metric that selects
        # the best epoch is the one the saved model (run from tokens in fp32) reports at the end.
        split_storage, split_autocast = (storage, autocast_bf16) if split == "train" else ("float32", False)
        features = _features(dataset)
        data_id = data_fingerprint({c: [f[c] for f in features] for c in features[0]})
        keys = {
            b: cache_key(
                {
                    "weights": digests[: b + 1],
                    "tokenizer": tokenizer_id,
                    "max_length": max_length,
                    "boundary": b,
                    "first_token_only": first_token_only,
                    "storage": split_storage,
                    "autocast_bf16": split_autocast,
                    "data": data_id,
                }
            )
            for b in boundaries
        }
        states = {b: store.load(keys[b], split_storage) for b in boundaries}
        missing = [b for b in boundaries if states[b] is None]
        seconds = 0.0
        if missing:
            started = time.perf_counter()
            computed = compute_states(surgery, features, missing, first_token_only, split_storage, batch_size, split_autocast)
            seconds = time.perf_counter() - started
            for b in missing:
                states[b] = store.save(keys[b], computed[b], {"split": split, "boundary": b, "examples": len(dataset)})
        dataset.states = states  # type: ignore[assignment]
        dataset.split_id = list(datasets).index(split)
        entries[split] = CacheEntry(states, seconds=seconds, reused=not missing)  # type: ignore[arg-type]
    runtime = CachedRuntime(surgery, layout, list(datasets.values()), entries, boundaries, first_token_only, storage, stage_boundaries)
    return runtime, "frozen bottom cached"


def sorted_order(tokenized: Any) -> list[int]:
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    return list(np.argsort(lengths, kind="stable")[::-1])
