"""ServingRole: how a task's runs are served over HTTP (routes and schemas) and described in their
model card (pipeline tag, library, a usage snippet that runs as written).

A route is plain data: a path, a pydantic request schema and an async handler. ``thawkit.serve``
mounts every task's routes on one FastAPI app and gives each handler a ``ServedCall``: the served
run the request picked and the batcher that runs it. Handlers raise ``RequestError`` for a bad request.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field


class ServeRequest(BaseModel):
    """Every request body: unknown fields are errors; ``model`` picks a served run."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, description="the served run to use (GET /v1/models); optional with one run of the task")


class RequestError(Exception):
    """A request the server answers with ``status`` (422, 413, ...) and an OpenAI-style error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


class ServedCall(Protocol):
    """What a route's handler may use: the picked run and the batcher."""

    name: str  # the served run's name
    labels: list[str]

    async def batch(self, kind: str, texts: list[str], pairs: list[str] | None = None) -> tuple[list[Any], int]:
        """Run ``kind`` (the run's ``predict``, ``logits`` or ``embed``) over the inputs, batched with other
        requests; returns the results in order and the input tokens counted."""
        ...

    async def generate(self, conversations: list[list[dict[str, str]]], options: dict[str, Any]) -> list[Any]:
        """A generation run's answers (``run.complete``'s), written together with other requests' that
        have the same options (continuous batching)."""
        ...

    async def exclusive(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(run)`` on a worker thread, alone on the run's model (its adapter active): for work
        that is not one forward pass (generating an answer token by token)."""
        ...

    def check_texts(self, texts: list[str]) -> None:
        """The server's limits on inputs per request and characters per input (raises RequestError)."""
        ...


@dataclass(frozen=True)
class Route:
    path: str
    request: type[ServeRequest]
    handler: Callable[[Any, ServedCall], Awaitable[Any]]
    summary: str = ""


class ServingRole:
    run_type: ClassVar[str]
    pipeline_tag: ClassVar[str]  # the Hugging Face pipeline tag of the model card
    card_library: ClassVar[str] = "transformers"  # the card's library_name (peft for an unmerged adapter)
    # What the card's usage snippet predicts: arguments of `thawkit predict RUN ...` (tests run it).
    usage_arguments: ClassVar[tuple[str, ...]] = ("your text",)
    unserved_fix: ClassVar[str] = "use thawkit predict"  # what to do instead, for a task without routes
    # Served answers are written token by token (many small forward passes): the server keeps OpenMP
    # threads spinning between passes rather than sleeping (thawkit.tasks.serves_token_by_token).
    serves_token_by_token: ClassVar[bool] = False
    # The card's stock-library snippet for a standard folder ({run}: the folder), or None with
    # ``stock_note`` saying why none exists (tests run every snippet against thawkit predict).
    stock_python: ClassVar[str | None] = None
    stock_note: ClassVar[str] = ""

    def routes(self) -> tuple[Route, ...]:
        """The HTTP endpoints this task's runs answer."""
        return ()

    def usage_command(self, run_folder: str = "RUN_FOLDER") -> list[str]:
        """The card's snippet as an argument list: a real ``thawkit predict`` call."""
        return ["thawkit", "predict", run_folder, *self.usage_arguments]

    def usage_snippet(self, run_folder: str = "RUN_FOLDER") -> str:
        return shlex.join(self.usage_command(run_folder))
