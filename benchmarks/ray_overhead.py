"""The Ray path against the local path: the same work, on this machine, as a ratio from one run.

1. compare: STRATEGIES x 2 seeds on N SST-2 sentences (real MiniLM-L6, max length 128, batch 32),
   locally (one job after another, the shared cache in-process) and as Ray tasks on a local Ray
   (--ray-cpus 1: two jobs side by side on two cores; the cache pass in one warm-up task).
2. train: one full fine-tuning run in one process against --ray-workers 2 (Ray Train, DDP on gloo).

Each side is a fresh process (`thawkit` CLI), timed end to end, Ray start-up included; the
feature cache folder is empty at the start of each comparison.

    python benchmarks/ray_overhead.py --train-size 1000 --out benchmarks/results/ray_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from sst2_cli import ENV, THAWKIT, Sst2Work  # noqa: E402


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--strategies", default="frozen,gradual")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray_overhead.json")
    args = parser.parse_args()
    sst2 = Sst2Work("ray", args.train_size, args.val_size)
    work, env, thawkit = sst2.folder, ENV, [THAWKIT]
    common = sst2.data_flags("--epochs", str(args.epochs), "--batch-size", "32", "--max-length", "128")
    results: dict[str, object] = {"train_size": args.train_size, "val_size": args.val_size, "epochs": args.epochs,
                                  "strategies": args.strategies, "cpus": os.cpu_count()}
    compares = {}
    for side, extra in (("local", []), ("ray", ["--ray", "--ray-cpus", "1"])):
        cache = work / f"cache-{side}"
        shutil.rmtree(cache, ignore_errors=True)
        compares[side] = timed([*thawkit, "compare", *common, "--strategies", args.strategies, "--seeds", "2", "--no-advise",
                                "--cache-dir", str(cache), "--out", str(work / f"compare-{side}"), *extra], env)
        summary = json.loads((work / f"compare-{side}" / "results.json").read_text())
        compares[f"{side}_winner"] = summary["winner"]["strategy"]
        compares[f"{side}_metrics"] = {r["strategy"]: r[f"validation_{summary['metric']}_mean"] for r in summary["results"]}
    compares["ray_over_local"] = compares["ray"] / compares["local"]
    results["compare_seconds"] = compares
    trains = {}
    for side, extra in (("local", []), ("ray_2_workers", ["--ray-workers", "2", "--ray-cpus", "1"])):
        trains[side] = timed([*thawkit, "train", *common, "--strategy", "full", "--out", str(work / f"train-{side}"), *extra], env)
        info = json.loads((work / f"train-{side}" / "thawkit.json").read_text())
        metrics = json.loads((work / f"train-{side}" / "metrics.json").read_text())
        trains[f"{side}_accuracy"] = metrics["validation"]["accuracy"]
        trains[f"{side}_world_size"] = info["world_size"]
    trains["ray_over_local"] = trains["ray_2_workers"] / trains["local"]
    results["train_seconds"] = trains
    sst2.finish(results, args.out)


if __name__ == "__main__":
    main()
