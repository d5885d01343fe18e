"""`thawkit serve RUN [RUN…]`: the HTTP server (FastAPI + uvicorn)."""

from __future__ import annotations

from typing import List

import typer

from thawkit.errors import ConfigError


def serve(
    runs: List[str] = typer.Argument(..., help="run folders to serve; NAME=RUN names one (default name: the folder's)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; 0.0.0.0 exposes the server to the network"),
    port: int = typer.Option(8000, min=1, max=65535, help="port"),
    max_batch_tokens: int = typer.Option(16384, min=1, help="padded tokens per forward pass (dynamic batching)"),
    max_wait_ms: float = typer.Option(0.0, min=0, help="how long a batch waits for more requests (0: it takes what queued "
                                                         "while the model was busy)"),
    max_inputs: int = typer.Option(64, min=1, help="inputs per request"),
    max_chars: int = typer.Option(20000, min=1, help="characters per input"),
    max_body_bytes: int = typer.Option(1_000_000, min=1, help="request body size"),
    max_queue: int = typer.Option(1024, min=1, help="inputs waiting per model; beyond, 503"),
    max_connections: int = typer.Option(256, min=1, help="open connections; beyond, a new one gets 503"),
    header_timeout: float = typer.Option(10.0, min=0.1, help="seconds a connection has to send its request line and headers"),
    body_timeout: float = typer.Option(30.0, min=0.1, help="seconds a request has to send its whole body (else 408)"),
) -> None:
    """Serve finished runs over HTTP: /predict, /ner, /qa, /embed, /v1/embeddings, /similarity, /v1/models, /metrics."""
    import os

    try:
        import uvicorn

        from thawkit.serve.http import bind, guarded_protocol
        from thawkit.serve.models import parse_run_arguments
    except ImportError as exc:
        raise ConfigError(f"serving needs the [serve] extra ({exc.name} is missing); fix: pip install 'thawkit[serve]'") from None
    from thawkit.tasks import serves_token_by_token

    named = parse_run_arguments(runs)
    # OpenMP threads sleep between forward passes instead of spinning: the event loop parsing the
    # next requests needs those cores. Answers written token by token are many small passes, where
    # waking threads costs more: generation-only servers keep them spinning (E2E LoRA, concurrency 8:
    # 2.88 answers/s ACTIVE, 1.90 with OpenMP's default, 2.04 PASSIVE). Set before torch loads; a
    # user's own setting wins.
    token_by_token = all(serves_token_by_token(path) for path in named.values())
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE" if token_by_token else "PASSIVE")
    from thawkit.serve import ServeLimits, create_app, load_served

    sock = bind(host, port)  # before the runs load: a busy port is one line, not minutes later
    try:
        served = load_served(named)
        limits = ServeLimits(max_inputs=max_inputs, max_chars=max_chars, max_body_bytes=max_body_bytes, max_queue=max_queue,
                             max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, body_timeout_s=body_timeout,
                             header_timeout_s=header_timeout, max_connections=max_connections)
        config = uvicorn.Config(create_app(served, limits), log_level="warning", http=guarded_protocol(header_timeout, max_connections),
                                timeout_keep_alive=5)
        typer.secho(f"serving {', '.join(f'{n} ({m.task})' for n, m in served.items())} on http://{host}:{port}", err=True)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
