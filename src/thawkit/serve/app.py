"""The FastAPI application: every task's routes (``Task.routes``), limits, Prometheus metrics, dynamic batching."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from thawkit.serve.batching import Batcher, GenerationBatcher, GenerationItem, Item, QueueFull
from thawkit.serve.models import ServedModel
from thawkit.tasks.roles import Route
from thawkit.tasks.roles.serving import RequestError

@dataclass
class ServeLimits:
    max_inputs: int = 64  # per request
    max_chars: int = 20_000  # per input
    max_body_bytes: int = 1_000_000
    max_queue: int = 1024  # inputs waiting per model; beyond: 503
    max_batch_tokens: int = 16_384  # padded tokens per forward pass
    # 0: continuous batching — a batch is what queued while the model was busy, so a lone request
    # waits for nothing; above 0, a batch also waits this long for company.
    max_wait_ms: float = 0.0
    body_timeout_s: float = 30.0  # for the whole request body, once its headers arrived; beyond: 408
    header_timeout_s: float = 10.0  # for a connection's request line and headers (real server only: serve.http)
    max_connections: int = 256  # open connections (real server only); beyond: 503


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int


class ErrorBody(BaseModel):
    """Every error the server answers (400-level and 5xx alike) has this shape."""

    error: ErrorDetail


_ERRORS = {404: "no such model (or none of this task served)", 408: "the request body did not arrive in time (--body-timeout)",
           413: "over a limit (--max-body-bytes, --max-inputs, --max-chars)", 422: "an invalid request: the message names the field",
           503: "overloaded (--max-queue, --max-connections): retry later"}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody, "description": text} for status, text in _ERRORS.items()}


class ApiError(RequestError):
    """A request the server refuses before any task's route sees it (unknown model, limits)."""


MAX_GENERATION_BATCH = 16  # answers written together in one generate call
DRIFT_WINDOW, DRIFT_MIN = 1000, 100  # predictions in the drift gauge's window; the fewest it reports on


def create_app(served: dict[str, ServedModel], limits: ServeLimits | None = None) -> FastAPI:
    """The app for ``served`` (from ``load_served``); run it with uvicorn."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    limits = limits or ServeLimits()
    registry = CollectorRegistry()
    requests = Counter("thawkit_requests", "requests", ["endpoint", "status"], registry=registry)
    latency = Histogram("thawkit_request_seconds", "request latency", ["endpoint"], registry=registry,
                        buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
    batch_sizes = Histogram("thawkit_batch_size", "inputs per forward pass (generation: answers per generate call)", registry=registry,
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
    batch_tokens = Histogram("thawkit_batch_padded_tokens", "padded tokens per forward pass", registry=registry,
                             buckets=(64, 256, 1024, 4096, 16384, 65536))
    queue_depth = Gauge("thawkit_queue_depth", "inputs waiting", ["model"], registry=registry)
    passes = Counter("thawkit_forward_passes", "forward passes, by how many served runs (adapters) they mix", ["runs"],
                     registry=registry)
    drift_psi = Gauge("thawkit_prediction_psi", f"PSI of the labels predicted over the last {DRIFT_WINDOW} predictions "
                      "against the run's predictions on its validation split (>= 0.2: shifted; thawkit drift)", ["model"],
                      registry=registry)
    drift_seen = Gauge("thawkit_prediction_window", "predicted labels in the drift window", ["model"], registry=registry)
    windows: dict[str, Any] = {}
    references: dict[str, Any] = {}  # per served run, read once from its metrics.json (not on every request)

    def observe_predictions(model: ServedModel, answers: list[Any]) -> None:
        """The drift gauge: the last DRIFT_WINDOW predicted labels against the run's validation predictions."""
        import collections

        import numpy as np

        from thawkit.guards.drift import psi

        if model.name not in references:
            references[model.name] = model.run.prediction_reference()
        reference = references[model.name]
        if reference is None:
            return
        window = windows.setdefault(model.name, collections.deque(maxlen=DRIFT_WINDOW))
        window.extend(model.run.predicted_label_ids(answers))
        drift_seen.labels(model.name).set(len(window))
        if len(window) >= DRIFT_MIN:
            drift_psi.labels(model.name).set(psi(reference, np.bincount(np.asarray(window), minlength=len(reference)).astype(float)))

    def observe(size: int, tokens: int) -> None:
        batch_sizes.observe(size)
        batch_tokens.observe(tokens)

    batchers: dict[int, Batcher] = {}

    def batcher_for(model: ServedModel) -> Batcher:
        key = id(model.lock)  # runs sharing a base share a lock, hence a batcher
        if key not in batchers:
            batchers[key] = Batcher(limits.max_batch_tokens, limits.max_wait_ms, limits.max_queue, observe,
                                    lambda runs: passes.labels(str(runs)).inc())
        return batchers[key]

    writers: dict[int, GenerationBatcher] = {}

    def writer_for(model: ServedModel) -> GenerationBatcher:
        key = id(model.lock)
        if key not in writers:
            writers[key] = GenerationBatcher(MAX_GENERATION_BATCH, limits.max_queue, batch_sizes.observe)
        return writers[key]

    async def run_generation(model: ServedModel, conversations: list[list[dict[str, str]]], options: dict[str, Any]) -> list[Any]:
        import asyncio

        loop = asyncio.get_running_loop()
        writer = writer_for(model)
        try:
            return await writer.submit([GenerationItem(model, c, options, loop.create_future()) for c in conversations])
        except QueueFull:
            raise ApiError(503, f"the queue for {model.name} is full ({limits.max_queue} prompts, --max-queue); retry later",
                           "overloaded") from None
        finally:
            queue_depth.labels(model.name).set(writer.depth())

    app = FastAPI(title="thawkit serve", version="1", description="Fine-tuned thawkit runs over HTTP")
    from thawkit.serve.http import BodyGuard

    # Added first, so it sits inside the metrics middleware below: its 413/408 answers are counted too.
    app.add_middleware(BodyGuard, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)

    @app.on_event("shutdown")
    async def _stop() -> None:
        for batcher in [*batchers.values(), *writers.values()]:
            await batcher.stop()

    @app.middleware("http")
    async def _limits_and_metrics(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        if request.url.path not in ("/metrics", "/health"):
            # Only the app's own routes get a series: any other path is "other" (bounded label values).
            endpoint = request.url.path if request.url.path in known_paths else "other"
            latency.labels(endpoint).observe(time.perf_counter() - started)
            requests.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8, not the declared form)
            return _error(422, "body: could not be read as JSON (send UTF-8 JSON with content-type application/json)")
        message = {404: "no such endpoint; see /openapi.json", 405: "method not allowed on this endpoint; see /openapi.json"}
        return _error(exc.status_code, message.get(exc.status_code, str(exc.detail)), "not_found" if exc.status_code == 404 else
                      "invalid_request_error")

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
        import logging

        logging.getLogger("thawkit").exception("request failed")
        return _error(500, f"internal error ({type(exc).__name__}): a bug in thawkit; please report it with the request", "server_error")

    @app.exception_handler(RequestError)
    async def _api_error(_request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            reason = (first.get("ctx") or {}).get("error", "invalid JSON")
            return _error(422, f"body: not valid JSON ({reason}, at character {first.get('loc', ('', '?'))[-1]})")
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return _error(422, f"{where or 'body'}: {first.get('msg')}")

    def pick(name: str | None, task: str) -> ServedModel:
        candidates = [m for m in served.values() if m.task == task]
        if name is not None:
            if name not in served:
                raise ApiError(404, f"model {name!r} is not served; served: {', '.join(served)}", "model_not_found")
            if served[name].task != task:
                raise ApiError(422, f"model {name!r} is a {served[name].task} run; this endpoint needs a {task} run")
            return served[name]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise ApiError(404, f"no {task} run is served", "model_not_found")
        raise ApiError(422, f"several {task} runs are served; pass \"model\": one of {', '.join(m.name for m in candidates)}")

    def check_inputs(texts: list[str]) -> None:
        if not texts:
            raise ApiError(422, "inputs is empty; pass at least one text")
        if len(texts) > limits.max_inputs:
            raise ApiError(413, f"{len(texts)} inputs exceed the limit of {limits.max_inputs} per request (--max-inputs)")
        for index, text in enumerate(texts):
            if len(text) > limits.max_chars:
                raise ApiError(413, f"input {index} has {len(text):,} characters, over the limit of {limits.max_chars:,} (--max-chars)")

    async def run_batch(model: ServedModel, kind: str, texts: list[str], pairs: list[str] | None = None) -> tuple[list[Any], int]:
        import asyncio

        check_inputs(texts + (pairs or []))
        tokenizer, max_length = model.counting_tokenizer, model.run.max_length
        counts = [min(len(tokenizer(t, p)["input_ids"]) if p is not None else len(tokenizer(t)["input_ids"]), max_length)
                  for t, p in zip(texts, pairs or [None] * len(texts))]
        loop = asyncio.get_running_loop()
        items = [Item(model, kind, t, p, n, loop.create_future()) for t, p, n in zip(texts, pairs or [None] * len(texts), counts)]
        batcher = batcher_for(model)
        try:
            results = await batcher.submit(items)
        except QueueFull:
            raise ApiError(503, f"the queue for {model.name} is full ({limits.max_queue} inputs, --max-queue); retry later",
                           "overloaded") from None
        finally:
            queue_depth.labels(model.name).set(batcher.depth())
        if kind == "predict":
            observe_predictions(model, results)
        return results, sum(counts)

    @app.get("/health", responses={408: ERROR_RESPONSES[408], 413: ERROR_RESPONSES[413]})
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(served)}

    @app.get("/v1/models", responses={408: ERROR_RESPONSES[408], 413: ERROR_RESPONSES[413]})
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [m.describe() for m in served.values()]}

    @app.get("/metrics", response_class=PlainTextResponse, responses={408: ERROR_RESPONSES[408], 413: ERROR_RESPONSES[413]})
    async def metrics() -> PlainTextResponse:
        for name, model in served.items():
            queue_depth.labels(name).set(batcher_for(model).depth() + (writers[id(model.lock)].depth() if id(model.lock) in writers else 0))
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    mounted: dict[str, str] = {}
    known_paths = {"/health", "/metrics", "/v1/models", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}
    for task in registered_task_handlers():
        for route in task.routes():
            if route.path in mounted:
                raise RuntimeError(f"route {route.path} is declared by tasks {mounted[route.path]} and {task.name}")
            mounted[route.path] = task.name
            known_paths.add(route.path)
            app.post(route.path, summary=route.summary or None, responses=ERROR_RESPONSES)(_endpoint(route, task.run_type, pick, run_batch, check_inputs,
                                                                                   run_generation))

    return app


@dataclass
class _Call:
    """What a task's route handler gets (``thawkit.tasks.roles.ServedCall``): the picked run and the batcher."""

    model: ServedModel
    run_batch: Any
    run_generation: Any = None

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def labels(self) -> list[str]:
        return list(self.model.run.labels)

    check_inputs: Any = None

    async def batch(self, kind: str, texts: list[str], pairs: list[str] | None = None) -> tuple[list[Any], int]:
        return await self.run_batch(self.model, kind, texts, pairs)

    async def generate(self, conversations: list[list[dict[str, str]]], options: dict[str, Any]) -> list[Any]:
        return await self.run_generation(self.model, conversations, options)

    async def exclusive(self, work: Any) -> Any:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, _exclusive, self.model, work)

    def check_texts(self, texts: list[str]) -> None:
        self.check_inputs(texts)


def _exclusive(model: ServedModel, work: Any) -> Any:
    with model.lock:  # runs sharing a base switch adapters: one at a time
        model.activate()
        return work(model.run)


def _endpoint(route: Route, run_type: str, pick: Any, run_batch: Any, check_inputs: Any, run_generation: Any) -> Any:
    """A FastAPI endpoint for a task's route: the body validated against the route's schema, the run
    picked among the served runs of that task."""
    import inspect

    async def endpoint(body: Any) -> Any:
        check_unicode(body.model_dump())
        return await route.handler(body, _Call(pick(body.model, run_type), run_batch, run_generation, check_inputs))

    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=route.request)])
    endpoint.__name__ = route.path.strip("/").replace("/", "_") or "root"
    return endpoint


def check_unicode(value: Any, where: str = "") -> None:
    """JSON may escape a lone surrogate (``"\\ud800"``) that no UTF-8 text holds: refused, naming the field."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ApiError(422, f"{where or 'body'}: invalid Unicode (a lone surrogate U+{ord(value[exc.start]):04X} at character "
                                f"{exc.start}); send valid UTF-8 text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_unicode(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_unicode(item, f"{where}[{index}]")


def registered_task_handlers() -> list[Any]:
    from thawkit.tasks import available_tasks, get_task

    return [get_task(name) for name in available_tasks()]


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})
