"""Dynamic batching: requests queue per underlying model; a batch is cut by a token budget that
counts padding (inputs sorted by length, cost = longest × count) or by the wait limit."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from thawkit.serve.models import ServedModel


class QueueFull(Exception):
    """The bounded queue is full: the server answers 503 rather than growing without limit."""


@dataclass
class Item:
    model: ServedModel
    kind: str  # "predict" or "embed"
    text: str
    pair: str | None
    tokens: int
    future: asyncio.Future = field(repr=False)


@dataclass
class BatchStats:
    batches: int = 0
    last_sizes: list[int] = field(default_factory=list)


class Batcher:
    """One per underlying model (models sharing a LoRA base share one)."""

    def __init__(self, max_batch_tokens: int, max_wait_ms: float, max_queue: int,
                 observe: Callable[[int, int], None] | None = None) -> None:
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=max_queue)
        self.observe = observe  # (batch size, padded tokens)
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None

    def depth(self) -> int:
        return self.queue.qsize()

    async def submit(self, items: list[Item]) -> list[Any]:
        self.start()
        if self.queue.qsize() + len(items) > self.queue.maxsize:
            raise QueueFull()
        for item in items:
            self.queue.put_nowait(item)
        return list(await asyncio.gather(*(item.future for item in items)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while True:
                longest = max(item.tokens for item in batch)
                if self.queue.empty():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self.queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                else:
                    nxt = self.queue.get_nowait()
                if max(longest, nxt.tokens) * (len(batch) + 1) > self.max_batch_tokens:
                    # Over the budget: this one starts the next batch.
                    await self._execute(loop, batch)
                    batch, deadline = [nxt], time.monotonic() + self.max_wait
                    continue
                batch.append(nxt)
            await self._execute(loop, batch)

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[Item]) -> None:
        batch.sort(key=lambda item: item.tokens)
        if self.observe is not None:
            self.observe(len(batch), max(item.tokens for item in batch) * len(batch))
        groups: dict[tuple[str, str, bool], list[Item]] = {}
        for item in batch:
            groups.setdefault((item.model.name, item.kind, item.pair is not None), []).append(item)
        for (_, kind, has_pair), items in groups.items():
            try:
                results = await loop.run_in_executor(None, _forward, items[0].model, kind,
                                                     [i.text for i in items], [i.pair for i in items] if has_pair else None)
            except Exception as exc:  # noqa: BLE001 - answered to each waiting request
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, result in zip(items, results):
                if not item.future.done():
                    item.future.set_result(result)


def _forward(model: ServedModel, kind: str, texts: list[str], pairs: list[str] | None) -> list[Any]:
    with model.lock:  # models sharing a base switch adapters: one forward at a time
        model.activate()
        if kind == "logits":
            return [row.tolist() for row in model.run.logits(texts, pairs, batch_size=len(texts))]
        if kind == "embed":
            return [row.tolist() for row in model.run.embed(texts, batch_size=len(texts))]
        return model.run.predict(texts, pairs, batch_size=len(texts))
