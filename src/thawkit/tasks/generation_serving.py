"""OpenAI's ``/v1/completions`` and ``/v1/chat/completions`` for generation runs, with SSE streaming.

A request picks its run with ``model`` (LoRA runs of one base share it and answer through their own
adapter). Answers are written on a worker thread, with continuous batching (``ServedCall.generate``):
the prompts that arrived while the model was writing are answered together in its next ``generate``
call, one batch per set of options and per run (LoRA runs of one base: one batch, each answer
through its own adapter). A request with a ``seed``, and a streamed one, is written alone on the
model (``ServedCall.exclusive``): its sampled tokens then depend on nothing else. The schemas follow
OpenAI's: unknown fields are refused (422), ``n`` other than 1 and penalties are refused with the
reason, ``stop`` strings end an answer (cut before them), ``usage`` counts real tokens.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from thawkit.tasks.roles import Route, ServedCall, ServeRequest
from thawkit.tasks.roles.serving import RequestError

MAX_TOKENS = 4096


class _Sampling(ServeRequest):
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS, description="tokens to write at most (default: the run's)")
    temperature: float | None = Field(default=None, ge=0, le=2, description="0 or absent: greedy; above: sampling")
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, description="answers per prompt (1 only)")
    stream: bool = False
    stop: Union[str, list[str], None] = Field(default=None, description="strings that end the answer (up to 4)")
    seed: int | None = Field(default=None, ge=0)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None
    stream_options: dict[str, Any] | None = None

    def options(self) -> dict[str, Any]:
        if self.n != 1:
            raise RequestError(422, "n: thawkit serve writes one answer per prompt; pass n=1 (or leave it out)")
        if self.presence_penalty or self.frequency_penalty:
            raise RequestError(422, "presence_penalty / frequency_penalty are not supported; leave them at 0")
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise RequestError(422, "stop: up to 4 non-empty strings")
        sample = bool(self.temperature)
        return {"max_new_tokens": self.max_tokens, "do_sample": sample, "temperature": self.temperature or 1.0,
                "top_p": self.top_p or 1.0, "seed": self.seed, "stop": stops or None}


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str]] = Field(description="a prompt, or a list of prompts (one answer each)")
    echo: bool = False


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Union[str, list[ContentPart]]
    name: str | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)


def _usage(answers: list[Any]) -> dict[str, int]:
    prompt, written = sum(a.prompt_tokens for a in answers), sum(a.completion_tokens for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": written, "total_tokens": prompt + written}


def _conversation(messages: list[ChatMessage]) -> list[dict[str, str]]:
    # OpenAI's "developer" role is the system prompt of newer models.
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in messages]


async def _answers(call: ServedCall, conversations: list[list[dict[str, str]]], options: dict[str, Any]) -> list[Any]:
    if options.get("seed") is not None:  # reproducible: the random draws of this request alone
        return await call.exclusive(lambda run: run.complete(conversations, **options))
    return await call.generate(conversations, options)


async def _completions(body: CompletionRequest, call: ServedCall) -> Any:
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    call.check_texts(prompts)
    if body.echo:
        raise RequestError(422, "echo is not supported; leave it out")
    options = body.options()
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    created, ident = int(time.time()), f"cmpl-{uuid.uuid4().hex[:24]}"
    if body.stream:
        if len(prompts) != 1:
            raise RequestError(422, "stream: one prompt per streamed request")

        def chunk(text: str, finish: str | None) -> dict[str, Any]:
            return {"id": ident, "object": "text_completion", "created": created, "model": call.name,
                    "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}

        return _stream(call, conversations[0], options, chunk, chunk)
    answers = await _answers(call, conversations, options)
    return {"id": ident, "object": "text_completion", "created": created, "model": call.name,
            "choices": [{"index": i, "text": a.text, "finish_reason": a.finish_reason, "logprobs": None} for i, a in enumerate(answers)],
            "usage": _usage(answers)}


async def _chat(body: ChatRequest, call: ServedCall) -> Any:
    call.check_texts([m.text for m in body.messages])
    if body.messages[-1].role == "assistant":
        raise RequestError(422, "messages: the last message is the assistant's; end with the user's message to answer")
    options = body.options()
    if body.max_completion_tokens is not None:
        options["max_new_tokens"] = body.max_completion_tokens
    conversation = _conversation(body.messages)
    created, ident = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"
    if body.stream:
        def first(text: str, finish: str | None) -> dict[str, Any]:
            return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": call.name,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": finish}]}

        def chunk(text: str, finish: str | None) -> dict[str, Any]:
            delta = {"content": text} if text or finish is None else {}
            return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": call.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        return _stream(call, conversation, options, first, chunk)
    answers = await _answers(call, [conversation], options)
    answer = answers[0]
    return {"id": ident, "object": "chat.completion", "created": created, "model": call.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": answer.finish_reason}],
            "usage": _usage(answers)}


def _stream(call: ServedCall, conversation: list[dict[str, str]], options: dict[str, Any], first: Any, chunk: Any) -> Any:
    """Server-sent events: a first chunk, one per decoded piece, a last one with the finish reason, then
    ``[DONE]``. The answer is written on a worker thread (alone on the model) and handed over piece by piece;
    text that could be the start of a stop string is held back until it is not."""
    from fastapi.responses import StreamingResponse
    from transformers import TextIteratorStreamer

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stops = options.get("stop") or []
    hold = max((len(s) for s in stops), default=1) - 1

    def work(run: Any) -> Any:
        streamer = TextIteratorStreamer(run.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, Any] = {}

        def generate() -> None:
            try:
                outcome["answers"] = run.complete([conversation], streamer=streamer, **options)
            except BaseException as exc:  # noqa: BLE001 - reported to the stream
                outcome["error"] = exc
                streamer.end()

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        for piece in streamer:
            loop.call_soon_threadsafe(queue.put_nowait, piece)
        worker.join()
        loop.call_soon_threadsafe(queue.put_nowait, outcome)

    async def events() -> Any:
        task = asyncio.ensure_future(call.exclusive(work))
        yield _sse(first("", None))
        text, sent, finished = "", 0, False
        while True:
            item = await queue.get()
            if isinstance(item, dict):
                break
            if finished:
                continue
            text += item
            lead = len(text) - len(text.lstrip())  # as the whole answer, the text after leading whitespace meets the stops
            cut = min((text.find(s, lead) for s in stops if s in text[lead:]), default=-1)
            if cut >= 0:
                text, finished = text[:cut], True
            ready = len(text) if finished else max(sent, len(text) - hold)
            if ready > sent:
                yield _sse(chunk(text[sent:ready], None))
                sent = ready
        await task
        if "error" in item:
            yield _sse({"error": {"message": str(item["error"]), "type": "server_error", "code": 500}})
            yield "data: [DONE]\n\n"
            return
        if len(text) > sent and not finished:
            yield _sse(chunk(text[sent:], None))
        answer = item["answers"][0]
        yield _sse(chunk("", "stop" if finished else answer.finish_reason))
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


ROUTES = (
    Route("/v1/completions", CompletionRequest, _completions, "text completion (OpenAI schema; stream: server-sent events)"),
    Route("/v1/chat/completions", ChatRequest, _chat, "chat completion (OpenAI schema; stream: server-sent events)"),
)
