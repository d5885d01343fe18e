"""`thawkit compare` of all six strategies against one full fine-tuning run, same data and machine.

SST-2, N training sentences, GLUE dev (872) as validation, E epochs, defaults otherwise. Timed as
whole processes, one after another on a quiet machine: `thawkit train --strategy full`, then
`thawkit compare --strategies all` (jobs one after another, each with every core), then the same
compare with `--workers 2` (two jobs side by side, one thread each). Per-phase seconds of every
run come from its thawkit.json. With `--plain-seconds`, the plain Trainer's full run (from
benchmarks/full_vs_trainer.py on the same sample) is a second reference.

    python benchmarks/compare_six.py --train-size 2000 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from sst2_cli import ENV, THAWKIT, Sst2Work  # noqa: E402


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(args, env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - started


def phases(run_folder: Path) -> dict:
    info = json.loads((run_folder / "thawkit.json").read_text())
    return {"timings": info.get("timings"), "cache_pass_seconds": (info.get("cache") or {}).get("pass_seconds"),
            "cache_reused": (info.get("cache") or {}).get("reused")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--workers", default="1,2", help="compare --workers values to time")
    parser.add_argument("--halving", action="store_true", help="also time compare --successive-halving (one process)")
    parser.add_argument("--plain-seconds", type=float, default=None, help="the plain Trainer's full run on the same sample")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compare_six.json")
    args = parser.parse_args()
    sst2 = Sst2Work("compare", args.train_size)
    work = sst2.folder
    common = sst2.data_flags("--epochs", str(args.epochs))
    results: dict = {"train_size": args.train_size, "epochs": args.epochs, "validation": 872}
    cache = ["--cache-dir", str(work / "cache")]  # cold: the comparison computes its own cached passes
    full_seconds = timed([THAWKIT, "train", *common, "--strategy", "full", "--out", str(work / "full"), *cache])
    full = json.loads((work / "full" / "metrics.json").read_text())["validation"]
    results["full_run"] = {"seconds": round(full_seconds, 1), "accuracy": full["accuracy"], **phases(work / "full")}
    print(f"full run: {full_seconds:.1f}s, accuracy {full['accuracy']:.4f}", flush=True)
    variants = [(f"workers_{w}", ["--workers", w]) for w in args.workers.split(",")]
    variants += [("successive_halving", ["--successive-halving"])] if args.halving else []
    for name, flags in variants:
        out = work / f"compare-{name}"
        seconds = timed([THAWKIT, "compare", *common, "--strategies", "all", *flags, "--out", str(out),
                         "--cache-dir", str(work / f"cache-{name}")])
        rows = json.loads((out / "results.json").read_text())
        table = rows.get("rows") or rows.get("results") or rows
        runs = {p.parent.name + "/" + p.name: phases(p) for p in sorted(out.glob("*/*")) if (p / "thawkit.json").exists()}
        results[f"compare_{name}"] = {
            "seconds": round(seconds, 1), "ratio_to_full_run": round(seconds / full_seconds, 2),
            **({"ratio_to_plain_full_run": round(seconds / args.plain_seconds, 2)} if args.plain_seconds else {}),
            "rows": [{k: r.get(k) for k in ("strategy", "validation_accuracy_mean", "validation_macro_f1_mean", "train_seconds_mean",
                                            "eliminated_at_rung")} for r in table] if isinstance(table, list) else table,
            "runs": runs,
        }
        print(f"compare {name}: {seconds:.1f}s = {seconds / full_seconds:.2f}x the full run"
              + (f", {seconds / args.plain_seconds:.2f}x the plain Trainer's" if args.plain_seconds else ""), flush=True)
    results["plain_trainer_full_seconds"] = args.plain_seconds
    results["command"] = " ".join(["python", "benchmarks/compare_six.py", *sys.argv[1:]])
    sst2.finish(results, args.out)


if __name__ == "__main__":
    main()
