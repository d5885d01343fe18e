"""Which strategy wins at which data size: the advisor's decision tree measured on real data.

For each size: a seeded SST-2 training sample (GLUE dev, 872, as validation) or the first N CoNLL-2003
training sentences (validation: the first 1,000 of validation.txt); `thawkit compare --strategies
all` with the defaults (one seed), then `thawkit advise` on the same file (SST-2: the advisor reads
classification data). Per size: every strategy's metric and seconds (training + cached pass), the
winner, and whether the advisor's pick is the winner or within 1 point of it.

    python benchmarks/size_sweep.py --sst2 200,1000,5000,20000 --conll 1000,5000 --epochs 3
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


def _run(args: list[str]) -> str:
    proc = subprocess.run(args, env=ENV, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def compare(flags: list[str], out: Path, epochs: float, strategies: str = "all") -> dict:
    started = time.perf_counter()
    _run([THAWKIT, "compare", *flags, "--strategies", strategies, "--epochs", str(epochs), "--out", str(out), "--no-advise"])
    payload = json.loads((out / "results.json").read_text())
    metric = payload["metric"]
    rows = {r["strategy"]: {"metric": r[f"validation_{metric}_mean"], "seconds": round(r["train_seconds_mean"], 1)}
            for r in payload["results"]}
    return {"metric": metric, "strategies": rows, "winner": payload["winner"]["strategy"],
            "wall_seconds": round(time.perf_counter() - started, 1)}


def check_advisor(entry: dict, pick: str) -> dict:
    best = max(v["metric"] for v in entry["strategies"].values())
    if pick not in entry["strategies"]:
        return {"advisor_pick": pick, "advisor_points_below_best": None, "advisor_within_1_point": None}
    picked = entry["strategies"][pick]["metric"]
    return {"advisor_pick": pick, "advisor_points_below_best": round(100 * (best - picked), 2),
            "advisor_within_1_point": best - picked <= 0.01}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2", default="200,1000,5000,20000")
    parser.add_argument("--conll", default="1000,5000")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--strategies", default="all", help="compare only these (the advisor's pick must be among them)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "size_sweep.json")
    args = parser.parse_args()
    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("sst2", {})
    results.setdefault("conll", {})
    for size in [int(s) for s in args.sst2.split(",") if s]:
        work = Sst2Work(f"size{size}", size)
        entry = compare(work.data_flags(), work.folder / "compare", args.epochs, args.strategies)
        advice = json.loads(_run([THAWKIT, "advise", "--data", str(work.train), "--text-col", "sentence", "--label-col", "label", "--json"]))
        entry.update(check_advisor(entry, advice["strategy"]), advisor_rule=advice["rule"], epochs=args.epochs)
        # The advisor's time estimates (for its own epoch count; scaled to this run's) against the measured seconds.
        scale = args.epochs / advice["epochs"]
        entry["advisor_time_check"] = {
            name: {"expected": round(alt["expected_seconds"] * scale, 1), "measured": entry["strategies"][name]["seconds"],
                   "ratio": round(alt["expected_seconds"] * scale / max(entry["strategies"][name]["seconds"], 0.1), 2)}
            for name, alt in advice["alternatives"].items() if name in entry["strategies"]}
        results["sst2"][str(size)] = entry
        print(f"sst2 {size}: " + json.dumps(entry), flush=True)
        work.finish(results, args.out)
    if args.conll:
        from defaults_sweep import conll_subsets

        validation, trains = conll_subsets("size", [int(s) for s in args.conll.split(",") if s])
        for size, train in trains.items():
            entry = compare(["--task", "ner", "--data", str(train), "--validation", str(validation), "--progress", "off",
                             "--no-measure-forgetting"], train.parent / f"compare-{size}", args.epochs, args.strategies)
            entry["epochs"] = args.epochs
            results["conll"][str(size)] = entry
            print(f"conll {size}: " + json.dumps(entry), flush=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    results["command"] = " ".join(["python", "benchmarks/size_sweep.py", *sys.argv[1:]])
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
