"""The advisor's time estimate against the runs it describes.

For each data set and size: `thawkit advise --json` (with the same validation file the runs use),
then `thawkit train --strategy X` for every strategy with nothing else given (the run a user starts
after reading the advice; its epochs are the engine's defaults, which the advisor plans with).
Measured: the run's own seconds (`thawkit.json` → timings, load to saved model) and the process's wall
seconds (Python and library imports included). The advisor's figure for X is for its recommended
epochs; it is scaled to the epochs the run used.

    python benchmarks/advisor_time.py --sst2 200,1000,5000 --conll 1000
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

from sst2_cli import ENV, THAWKIT, Sst2Work

STRATEGIES = ("frozen", "partial", "gradual", "llrd", "lora", "full")


def _run(args: list[str]) -> tuple[str, float]:
    started = time.perf_counter()
    proc = subprocess.run(args, env=ENV, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout, time.perf_counter() - started


def check(advise_flags: list[str], train_flags: list[str], folder: Path, strategies: list[str]) -> dict:
    out, advise_seconds = _run([THAWKIT, "advise", *advise_flags, "--json"])
    advice = json.loads(out)
    rows = {}
    for name in strategies:
        run_dir = folder / f"run-{name}"
        _, wall = _run([THAWKIT, "train", *train_flags, "--strategy", name, "--out", str(run_dir), "--overwrite"])
        info = json.loads((run_dir / "thawkit.json").read_text())
        epochs = float(info["config"]["epochs"])
        run_seconds = info["timings"]["total_before_save"]
        expected = advice["alternatives"][name]["expected_seconds"] * epochs / advice["epochs"]
        rows[name] = {"expected": round(expected, 1), "run_seconds": round(run_seconds, 1), "process_seconds": round(wall, 1),
                      "ratio": round(expected / max(run_seconds, 0.1), 2), "epochs": epochs,
                      "steps": info.get("global_steps"), "stopped_early": info.get("stopped_early")}
        print(name, rows[name], flush=True)
    return {"advice": {"strategy": advice["strategy"], "epochs": advice["epochs"], "batch_size": advice["batch_size"],
                       "seconds": round(advise_seconds, 1)}, "strategies": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2", default="200,1000,5000")
    parser.add_argument("--conll", default="1000")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "advisor_time.json")
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    for size in [int(s) for s in args.sst2.split(",") if s]:
        work = Sst2Work(f"advtime{size}", size)
        flags = work.data_flags()
        advise_flags = ["--data", str(work.train), "--validation", str(work.validation), "--text-col", "sentence",
                        "--label-col", "label"]
        results.setdefault("sst2", {})[str(size)] = check(advise_flags, flags, work.folder, strategies)
        work.finish(results, args.out)
    if args.conll:
        from defaults_sweep import conll_subsets

        validation, trains = conll_subsets("advtime", [int(s) for s in args.conll.split(",") if s])
        for size, train in trains.items():
            data = ["--task", "ner", "--data", str(train), "--validation", str(validation)]
            results.setdefault("conll", {})[str(size)] = check(
                data, [*data, "--progress", "off", "--no-measure-forgetting"], train.parent, strategies)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    results["command"] = " ".join(["python", "benchmarks/advisor_time.py", *sys.argv[1:]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
