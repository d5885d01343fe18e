"""Dynamic batching: requests queue per underlying model; a batch is cut by a token budget that
counts padding (inputs sorted by length, cost = longest × count) or by the wait limit. Answers of
generation runs batch continuously (``GenerationBatcher``)."""

from __future__ import annotations

import asyncio
import time
import weakref
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


class _Worker:
    """A bounded queue of items, each with a future, and the task that works through it (``_run``)."""

    queue: asyncio.Queue[Any]
    task: asyncio.Task | None

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

    async def submit(self, items: list[Any]) -> list[Any]:
        self.start()
        if self.queue.qsize() + len(items) > self.queue.maxsize:
            raise QueueFull()
        for item in items:
            self.queue.put_nowait(item)
        return list(await asyncio.gather(*(item.future for item in items)))

    async def _run(self) -> None:
        raise NotImplementedError


class Batcher(_Worker):
    """One per underlying model (models sharing a LoRA base share one)."""

    def __init__(self, max_batch_tokens: int, max_wait_ms: float, max_queue: int,
                 observe: Callable[[int, int], None] | None = None,
                 count_pass: Callable[[int], None] | None = None) -> None:
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=max_queue)
        self.observe = observe  # (batch size, padded tokens)
        self.count_pass = count_pass  # (served models in one forward pass)
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            await asyncio.sleep(0)  # let requests already received enqueue first: bigger batches, no timed wait
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
        groups: dict[tuple[Any, ...], list[Item]] = {}
        for item in batch:
            # Adapters on one base with the same input handling run in one forward pass, each text
            # routed through its own adapter and head; anything else runs per model.
            mixable = item.model.adapter is not None and item.kind in ("predict", "logits") and _routes_mixed_batches(item.model)
            model_key = ("base", id(item.model.lock), item.model.run.max_length) if mixable else item.model.name
            groups.setdefault((model_key, item.kind, item.pair is not None), []).append(item)
        for (_, kind, has_pair), items in groups.items():
            texts, pairs = [i.text for i in items], [i.pair for i in items] if has_pair else None
            if self.count_pass is not None:
                self.count_pass(len({i.model.name for i in items}))
            if len({i.model.name for i in items}) > 1:
                await _settle(items, loop.run_in_executor(None, _forward_mixed, [i.model for i in items], kind, texts, pairs))
            else:
                await _settle(items, loop.run_in_executor(None, _forward, items[0].model, kind, texts, pairs))


async def _settle(items: list[Any], work: Any) -> None:
    """Each waiting request gets its own result from ``work``, or the error that stopped it."""
    try:
        results = await work
    except Exception as exc:  # noqa: BLE001 - answered to each waiting request
        for item in items:
            if not item.future.done():
                item.future.set_exception(exc)
        return
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


# per loaded base (the PeftModel itself, weakly: an id is reused once a base is freed): can it route mixed batches?
_MIXED_ROUTING: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _routes_mixed_batches(model: ServedModel) -> bool:
    """Whether peft can route each example of a batch to its own adapter's head copies: every
    ``modules_to_save`` copy wraps a module type its mixed batches support (checked once per base)."""
    base = model.run.model
    if base not in _MIXED_ROUTING:
        from peft.utils.other import ModulesToSaveWrapper

        from thawkit.models.layout import routable_module_types

        _MIXED_ROUTING[base] = all(isinstance(m.original_module, routable_module_types())
                                   for m in base.modules() if isinstance(m, ModulesToSaveWrapper))
    return _MIXED_ROUTING[base]


def _forward_mixed(models: list[ServedModel], kind: str, texts: list[str], pairs: list[str] | None) -> list[Any]:
    """One forward pass over a batch that mixes adapters of one base (peft's ``adapter_names``);
    each answer is shaped by its own run (labels, multi-label threshold)."""
    base = models[0]
    try:
        with base.lock:
            logits = base.run.logits(texts, pairs, batch_size=len(texts), adapter_names=[m.adapter for m in models])
    except TypeError:  # a head peft cannot route per example (e.g. with a LayerNorm): one pass per adapter
        answers: list[Any] = [None] * len(texts)
        for model in {m.name: m for m in models}.values():
            rows = [i for i, m in enumerate(models) if m.name == model.name]
            found = _forward(model, kind, [texts[i] for i in rows], [pairs[i] for i in rows] if pairs is not None else None)
            for i, answer in zip(rows, found):
                answers[i] = answer
        return answers
    if kind == "logits":
        return [row.tolist() for row in logits]
    return [model.run.predictions_from_logits(row[None])[0] for model, row in zip(models, logits)]


@dataclass
class GenerationItem:
    model: ServedModel
    conversation: list[dict[str, str]]
    options: dict[str, Any]
    future: asyncio.Future = field(repr=False)

    def key(self) -> tuple[Any, ...]:
        """Answers with the same key are written in one generate call: one run, or LoRA runs of one
        base that render prompts alike (each answer through its own adapter)."""
        options = {**self.options, "max_new_tokens": self.options.get("max_new_tokens") or self.model.run.max_new_tokens}
        resolved = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
        if _mixes_generation(self.model):
            return "base", id(self.model.lock), self.model.run.tokenizer.chat_template, resolved
        return self.model.name, resolved


class GenerationBatcher(_Worker):
    """Continuous batching of answers: what queued while the model was writing goes into the next
    ``generate`` call together (left-padded; one batch per set of options and per run, or per base
    for LoRA runs sharing one, each answer through its own adapter), so concurrent requests share
    each decoding step instead of taking turns. One per underlying model."""

    def __init__(self, max_batch: int, max_queue: int, observe: Callable[[int], None] | None = None) -> None:
        self.max_batch = max_batch
        self.queue: asyncio.Queue[GenerationItem] = asyncio.Queue(maxsize=max_queue)
        self.observe = observe  # (answers in one generate call)
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        waiting: list[GenerationItem] = []
        while True:
            if not waiting:
                waiting.append(await self.queue.get())
                await asyncio.sleep(0)  # requests already received enqueue first
            while not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            key = waiting[0].key()  # the oldest request's group goes first
            group = [item for item in waiting if item.key() == key][: self.max_batch]
            waiting = [item for item in waiting if item not in group]
            if self.observe is not None:
                self.observe(len(group))
            await _settle(group, loop.run_in_executor(None, _generate, [i.model for i in group], [i.conversation for i in group],
                                                      group[0].options))


def _generate(models: list[ServedModel], conversations: list[list[dict[str, str]]], options: dict[str, Any]) -> list[Any]:
    model = models[0]
    with model.lock:  # runs sharing a base switch adapters: one at a time
        if len({m.name for m in models}) == 1:
            model.activate()
            return model.run.complete(conversations, **options)
        resolved = {**options, "max_new_tokens": options.get("max_new_tokens") or model.run.max_new_tokens}
        return model.run.complete(conversations, adapter_names=[m.adapter for m in models], **resolved)


def _mixes_generation(model: ServedModel) -> bool:
    """A LoRA adapter (not DoRA) on a shared base: peft routes each row of a batch to its own adapter."""
    if model.adapter is None:
        return False
    config = model.run.model.peft_config.get(model.adapter)
    kind = getattr(getattr(config, "peft_type", None), "value", None)
    return kind == "LORA" and not getattr(config, "use_dora", False)
