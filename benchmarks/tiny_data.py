"""Tiny training sets: every strategy with its defaults (or given epochs) on N SST-2 sentences.

A seeded SST-2 sample of N training sentences, GLUE dev (872) as validation; `thawkit train` per
strategy with nothing but data and strategy given (or `--epochs E` for each E listed), one seed.
Prints validation accuracy / macro-F1, the best epoch and seconds per run, and writes them as JSON.

    python benchmarks/tiny_data.py --size 200 --strategies frozen,partial,llrd,lora,full,gradual --epochs default
    python benchmarks/tiny_data.py --size 200 --strategies partial,llrd,lora,full,gradual --epochs 3,10,20
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--strategies", default="frozen,partial,llrd,lora,full,gradual")
    parser.add_argument("--epochs", default="default", help="comma-separated; 'default': no --epochs given")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tiny_data.json")
    args = parser.parse_args()
    work = Sst2Work(f"tiny{args.size}", args.size)
    results: dict = {"size": args.size, "runs": []}
    for epochs in args.epochs.split(","):
        for strategy in args.strategies.split(","):
            out = work.folder / f"{strategy}-{epochs}"
            started = time.perf_counter()
            flags = ["--epochs", epochs] if epochs != "default" else []
            proc = subprocess.run([THAWKIT, "train", *work.data_flags(), "--strategy", strategy, *flags, "--out", str(out)],
                                  env=ENV, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr[-2000:])
            info = json.loads((out / "thawkit.json").read_text())
            validation = json.loads((out / "metrics.json").read_text())["validation"]
            row = {"strategy": strategy, "epochs_given": epochs, "epochs_run": info["config"]["epochs"],
                   "epochs_source": info.get("epochs_source"), "accuracy": validation.get("accuracy"),
                   "macro_f1": validation.get("macro_f1"), "best_epoch": info["best"]["best_epoch"],
                   "stopped_early": info["best"]["stopped_early"], "global_steps": info["global_steps"],
                   "seconds": round(time.perf_counter() - started, 1)}
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
    results["command"] = " ".join(["python", "benchmarks/tiny_data.py", *sys.argv[1:]])
    work.finish(results, args.out)


if __name__ == "__main__":
    main()
