"""What stands between the network and the app: request bodies bounded while they stream, slow
clients timed out, a connection limit, and the port bound before anything is promised.

- ``BodyGuard`` (ASGI middleware, outermost): counts the bytes of every request body as it
  arrives, chunked or not, and answers 413 the moment the limit is passed (never reading the rest);
  a body that does not arrive within ``--body-timeout`` seconds gets 408.
- ``guarded_protocol`` (uvicorn's h11 protocol, subclassed): a connection must deliver its request
  headers within ``--header-timeout`` seconds of opening (or of its previous response), else it is
  closed (slowloris); beyond ``--max-connections`` open connections a new one gets a 503 in the
  documented JSON shape and is closed.
- ``bind``: the listening socket, so a busy port is one line and exit 2 before the models load.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from typing import Any

from thawkit.errors import ConfigError


def error_body(status: int, message: str, kind: str = "invalid_request_error") -> bytes:
    """The one error shape every answer of the server uses (docs/serving.md)."""
    return json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()


class BodyGuard:
    """ASGI middleware: the request body read in full (up to ``max_bytes``) within ``timeout_s``,
    then handed to the app; what the app reads after it (a disconnect) comes from the client."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _answer(send, 413, f"request body of {int(declared):,} bytes exceeds the limit of {self.max_bytes:,} bytes "
                                     "(--max-body-bytes)")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                await _answer(send, 408, f"the request body did not arrive within {self.timeout_s:g} s (--body-timeout)",
                              "timeout")
                return
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _answer(send, 413, f"request body exceeds the limit of {self.max_bytes:,} bytes (--max-body-bytes)")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, handed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _answer(send: Any, status: int, message: str, kind: str = "invalid_request_error") -> None:
    body = error_body(status, message, kind)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type:
    """uvicorn's h11 protocol with a header deadline and a connection limit."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._headers_deadline: asyncio.TimerHandle | None = None
            self._timed_cycle: Any = None
            if len(self.connections) > max_connections:
                body = error_body(503, f"the server has {max_connections} open connections (--max-connections); retry later",
                                  "overloaded")
                transport.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                                b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._headers_deadline = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if getattr(self, "_headers_deadline", None) is not None:
                self._headers_deadline.cancel()
                self._headers_deadline = None

        def _too_slow(self) -> None:
            self._headers_deadline = None
            if self.cycle is self._timed_cycle and not self.transport.is_closing():
                self.transport.close()  # no complete request line and headers in time

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and self.cycle is not self._timed_cycle:
                self._timed_cycle = self.cycle  # headers arrived; the body has BodyGuard's deadline
                self._disarm()

        def on_response_complete(self) -> None:
            finished = self._timed_cycle = self.cycle
            super().on_response_complete()  # may start a pipelined request (handle_events then disarms)
            if not self.transport.is_closing() and self.cycle is finished:
                self._arm()  # the next request's headers are due within the deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


def bind(host: str, port: int) -> socket.socket:
    """The listening socket; a port in use or not ours to take is one line, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use; fix: pass another --port, or stop the process "
                              "holding it") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); fix: pass another --host/--port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
