"""Two smollm2-135m LoRA runs on one base behind `thawkit serve`'s OpenAI endpoints.

The first run is generation_e2e.py's LoRA run (E2E references); the second is trained here on the
same meaning representations with the answers rewritten in another style ("In short: " and lower
case), so the two adapters' answers show whose adapter wrote them. The OpenAI Python client streams a
chat completion from each; then --requests chat completions (max_tokens --max-tokens) at concurrency
--concurrency, alternating the two runs (asyncio + httpx in this process, the server in its own):
errors, latency p50/p99, answers per second.

    python benchmarks/serve_generation.py --lora-run /tmp/thawkit-bench-e2e/lora
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serve_generation.json"
PROMPTS = ["name[The Eagle], eatType[coffee shop], food[French], area[riverside]",
           "name[Alimentum], food[Italian], priceRange[cheap], area[city centre]",
           "name[The Punter], eatType[restaurant], food[Indian], customer rating[high]"]


def styled_run(workdir: Path) -> Path:
    import thawkit

    out = workdir / "lora-in-short"
    if (out / "thawkit.json").exists():
        return out
    train = pd.read_csv(workdir / "train.csv")
    keep = list(dict.fromkeys(train["mr"]))[:25]
    styled = train[train["mr"].isin(keep)].assign(ref=lambda f: "In short: " + f["ref"].str.lower())
    styled.to_csv(workdir / "train-in-short.csv", index=False)
    thawkit.train(task="generation", model="smollm2-135m", strategy="lora", data=workdir / "train-in-short.csv", text_col="mr",
                  label_col="ref", epochs=3, max_length=160, out=out, progress="lines", generation_samples=4, measure_forgetting=False)
    return out


async def load(port: int, requests: int, concurrency: int, max_tokens: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        async def one(i: int) -> None:
            body = {"model": ("e2e", "in-short")[i % 2], "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}
            async with semaphore:
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/chat/completions", json=body)
                    key = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - started)
                if key is not None:
                    errors[key] = errors.get(key, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"requests": requests, "concurrency": concurrency, "max_tokens": max_tokens, "errors": errors, "seconds": round(seconds, 1),
            "answers_per_second": round(requests / seconds, 2), "p50_s": round(statistics.median(ordered), 3),
            "p99_s": round(ordered[int(0.99 * (len(ordered) - 1))], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora-run", type=Path, default=Path("/tmp/thawkit-bench-e2e/lora"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    second = styled_run(args.lora_run.parent)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("thawkit")
    server = subprocess.Popen([str(exe), "serve", f"e2e={args.lora_run}", f"in-short={second}", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import openai

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        deadline = time.monotonic() + 300
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        styles = {}
        for name in ("e2e", "in-short"):
            stream = client.chat.completions.create(model=name, stream=True, max_tokens=60,
                                                    messages=[{"role": "user", "content": PROMPTS[0]}])
            styles[name] = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
            print(name, "->", styles[name], flush=True)
        result = {"command": " ".join(sys.argv), "streamed": styles,
                  "load": asyncio.run(load(port, args.requests, args.concurrency, args.max_tokens))}
    finally:
        server.terminate()
        server.wait(timeout=60)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
