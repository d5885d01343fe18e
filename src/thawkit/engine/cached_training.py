"""The cached training path: datasets that serve boundary states, their collator, and the switch
that follows the strategy's stages (module surgery + dataset boundary move together)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from thawkit.engine.cache import (
    CacheEntry,
    FeatureStore,
    block_digests,
    cache_key,
    compute_states,
    data_fingerprint,
    tokenizer_fingerprint,
)
from thawkit.engine.stages import StageController
from thawkit.engine.surgery import ModelSurgery
from thawkit.models.layout import EMBEDDINGS, BlockLayout
from thawkit.strategies.base import TrainablePlan

log = logging.getLogger("thawkit")


def boundary_for(plan: TrainablePlan, layout: BlockLayout) -> int | None:
    """First layer that must run for real: below it everything is frozen. None: embeddings train."""
    blocks = plan.trainable_blocks(layout)
    if EMBEDDINGS in blocks:
        return None
    layers = [int(block.split(".")[1]) for block in blocks if block.startswith("layer.")]
    return min(layers) if layers else layout.num_layers


_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class SwitchableDataset(torch.utils.data.Dataset):
    """Serves tokenized examples (plain path) or cached boundary states (cached path).

    ``order`` lets evaluation sets run in length order (less padding); metrics do not depend on it.
    """

    def __init__(self, tokenized: Any, order: list[int] | None = None) -> None:
        self.tokenized = tokenized
        self.rows = [tokenized[i] for i in range(len(tokenized))]
        self.order = order
        self.states: dict[int, Any] = {}
        self.boundary: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        return [len(self.rows[self._index(i)]["input_ids"]) for i in range(len(self))]

    def _index(self, i: int) -> int:
        return self.order[i] if self.order is not None else i

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self._index(i)
        row = self.rows[index]
        if self.boundary is None:
            return row
        # Cached states replace the token inputs; targets (labels, start/end positions) stay.
        targets = {k: v for k, v in row.items() if k not in _TOKEN_INPUTS}
        return {"inputs_embeds": self.states[self.boundary].get(index), **targets}


class SwitchableCollator:
    """Pads token ids (plain path) or boundary states (cached path) to the batch's longest example."""

    def __init__(self, tokenizer: Any, plain: Any = None) -> None:
        self.plain = plain if plain is not None else DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "inputs_embeds" not in features[0]:
            return self.plain(features)
        width = max(f["inputs_embeds"].shape[0] for f in features)
        hidden = features[0]["inputs_embeds"].shape[1]
        embeds = torch.zeros(len(features), width, hidden)  # (batch, tokens, hidden)
        mask = torch.zeros(len(features), width, dtype=torch.long)
        for row, feature in enumerate(features):
            length = feature["inputs_embeds"].shape[0]
            embeds[row, :length] = feature["inputs_embeds"]
            mask[row, :length] = 1
        batch = {"inputs_embeds": embeds, "attention_mask": mask}
        for key in features[0]:
            if key == "inputs_embeds":
                continue
            values = [f[key] for f in features]
            if isinstance(values[0], list) and values[0] and isinstance(values[0][0], int):
                # Token labels: pad with -100 (ignored by the loss) to the batch's width.
                values = [x + [-100] * (width - len(x)) for x in values]
            batch[key] = torch.tensor(values)
        return batch


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

    def follow(self, plan: TrainablePlan) -> None:
        """Called at every stage change: move the model and the datasets to the new boundary."""
        boundary = boundary_for(plan, self.layout)
        if boundary is None or boundary not in self.boundaries:
            self.surgery.restore()
            boundary = None
        else:
            self.surgery.start_at(boundary)
        for dataset in self.datasets:
            dataset.boundary = boundary

    def finish(self) -> None:
        self.surgery.restore()
        for dataset in self.datasets:
            dataset.boundary = None

    def summary(self) -> dict[str, Any]:
        return {
            "used": True,
            "boundaries": self.boundaries,
            "stage_boundaries": self.stage_boundaries,
            "first_token_only": self.first_token_only,
            "storage": self.storage,
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
                cached_batch = collator([{"inputs_embeds": states.get(i), "labels": 0} for i in range(len(sample))])
                cached = _logits(model(
                    inputs_embeds=cached_batch["inputs_embeds"].to(device),
                    attention_mask=cached_batch["attention_mask"].to(device),
                ))
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
    stage_boundaries = [boundary_for(controller.strategy.plan(layout, s), layout) for s in range(stages)]
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
                    "storage": storage,
                    "autocast_bf16": autocast_bf16,
                    "data": data_id,
                }
            )
            for b in boundaries
        }
        states = {b: store.load(keys[b], storage) for b in boundaries}
        missing = [b for b in boundaries if states[b] is None]
        seconds = 0.0
        if missing:
            started = time.perf_counter()
            computed = compute_states(surgery, features, missing, first_token_only, storage, batch_size, autocast_bf16)
            seconds = time.perf_counter() - started
            for b in missing:
                states[b] = store.save(keys[b], computed[b], {"split": split, "boundary": b, "examples": len(dataset)})
        dataset.states = states  # type: ignore[assignment]
        entries[split] = CacheEntry(states, seconds=seconds, reused=not missing)  # type: ignore[arg-type]
    runtime = CachedRuntime(surgery, layout, list(datasets.values()), entries, boundaries, first_token_only, storage, stage_boundaries)
    return runtime, "frozen bottom cached"


def sorted_order(tokenized: Any) -> list[int]:
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    return list(np.argsort(lengths, kind="stable")[::-1])
