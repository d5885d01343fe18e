"""Load on `thawkit serve` over loopback: PyTorch, ONNX fp32 and ONNX int8 of one MiniLM-L6
classification run (SST-2), and a mixed-adapter load on two LoRA runs sharing one base.

For each served model: p50/p99 latency at concurrency 1 (one short sentence per request), then
throughput and p50/p99 at concurrency 8 and 32 (asyncio + httpx client in this process, the
server in its own process, both on this machine's cores). The PyTorch server then takes
--soak requests at concurrency 32: errors counted, server RSS sampled before and after.

    python benchmarks/serve_load.py --out benchmarks/results/serve_load.json
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from sst2_cli import ENV, THAWKIT, Sst2Work  # noqa: E402

SENTENCES = ["a gripping, beautifully shot film", "ninety minutes of nothing", "the cast is fine but the script is thin",
             "one of the year's best", "dull", "an unexpected delight from start to finish"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


class Server:
    def __init__(self, runs: list[str], env: dict[str, str], options: str = "") -> None:
        self.port = free_port()
        command = [str(Path(sys.executable).parent / "thawkit"), "serve", *runs, "--port", str(self.port), *options.split()]
        # The server's log goes to a file: an unread pipe fills and blocks the server.
        self.log = Path(tempfile.mkstemp(prefix="thawkit-serve-", suffix=".log")[1])
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=self.log.open("w"), text=True)
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise SystemExit(f"server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> dict[str, int]:
        self.process.terminate()
        self.process.wait(timeout=30)
        text = self.log.read_text()
        return {"server_tracebacks": text.count("Traceback (most recent call last)")}


async def load(url: str, concurrency: int, requests: int, models: list[str | None]) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            body = {"inputs": SENTENCES[i % len(SENTENCES)]}
            model = models[i % len(models)]
            if model is not None:
                body["model"] = model
            started = time.perf_counter()
            try:
                response = await client.post(url + "/predict", json=body)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    latencies.sort()
    return {"concurrency": concurrency, "requests": requests, "errors": errors, "seconds": round(seconds, 2),
            "throughput_rps": round(requests / seconds, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 2),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2)}


def measure(server: Server, requests: int, models: list[str | None]) -> dict[str, object]:
    asyncio.run(load(server.url, 4, 40, models))  # warm-up
    return {f"c{c}": asyncio.run(load(server.url, c, n, models))
            for c, n in ((1, max(100, requests // 4)), (8, requests), (32, requests))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--soak", type=int, default=10000)
    parser.add_argument("--skip-lora", action="store_true", help="only PyTorch, ONNX fp32 and int8")
    parser.add_argument("--serve-options", default="", help="extra 'thawkit serve' flags, e.g. '--max-wait-ms 5'")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    args = parser.parse_args()
    sst2 = Sst2Work("serve", args.train_size)
    work, env, thawkit = sst2.folder, ENV, THAWKIT
    common = sst2.data_flags("--epochs", "1", "--max-length", "64")
    subprocess.run([thawkit, "train", *common, "--strategy", "full", "--out", str(work / "full")], env=env, check=True)
    for quantize in (None, "int8"):
        name = "onnx-int8" if quantize else "onnx-fp32"
        subprocess.run([thawkit, "export", str(work / "full"), "--onnx", *(["--quantize", quantize] if quantize else []),
                        "--out", str(work / name)], env=env, check=True, capture_output=True)
    exports = {name: json.loads((work / name / "export.json").read_text()) for name in ("onnx-fp32", "onnx-int8")}
    results: dict[str, object] = {"train_size": args.train_size, "cpus": os.cpu_count(), "exports": exports,
                                  "serve_options": args.serve_options}
    for name in ("full", "onnx-fp32", "onnx-int8"):
        server = Server([f"{name}={work / name}"], env, args.serve_options)
        try:
            results[name] = measure(server, args.requests, [None])
            if name == "full" and args.soak:
                before = rss_mb(server.process.pid)
                soak = asyncio.run(load(server.url, 32, args.soak, [None]))
                results["soak"] = {**soak, "rss_before_mb": round(before, 1), "rss_after_mb": round(rss_mb(server.process.pid), 1)}
        finally:
            results[f"{name}_server"] = server.stop()
    if args.skip_lora:
        sst2.finish(results, args.out)
        return
    for seed in (1, 2):
        subprocess.run([thawkit, "train", *common, "--strategy", "lora", "--seed", str(seed), "--out", str(work / f"lora{seed}")],
                       env=env, check=True)
    server = Server([f"a={work / 'lora1'}", f"b={work / 'lora2'}"], env, args.serve_options)
    try:
        results["lora_one_adapter"] = measure(server, args.requests, ["a"])
        results["lora_mixed_adapters"] = measure(server, args.requests, ["a", "b"])
        import httpx

        results["lora_forward_passes"] = [line for line in httpx.get(server.url + "/metrics").text.splitlines()
                                          if line.startswith("thawkit_forward_passes_total")]
    finally:
        results["lora_server"] = server.stop()
    sst2.finish(results, args.out)


if __name__ == "__main__":
    main()
