"""Distillation on SST-2: a 3-layer student of a fine-tuned 6-layer MiniLM-L6 teacher.

Teacher: full fine-tuning on N SST-2 sentences (GLUE dev as validation). Students, same data,
epochs and seed: `thawkit distill --student layers:3` (soft targets, alpha 0.5, T 2) and the same
3-layer student trained on the labels alone (alpha 0). Reports the teacher's and students'
validation accuracy, the share retained and the measured inference speed-up (distillation.json).

    python benchmarks/distill_sst2.py --train-size 2000 --out benchmarks/results/distill_sst2.json
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
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distill_sst2.json")
    args = parser.parse_args()
    sst2 = Sst2Work("distill", args.train_size)
    work, env, thawkit = sst2.folder, ENV, THAWKIT
    common = sst2.data_flags("--epochs", str(args.epochs), "--max-length", "64", "--metric", "accuracy")
    results: dict[str, object] = {"train_size": args.train_size, "epochs": args.epochs, "validation": 872}
    started = time.perf_counter()
    subprocess.run([thawkit, "train", *common, "--strategy", "full", "--out", str(work / "teacher")], env=env, check=True,
                   capture_output=True)
    results["teacher_seconds"] = round(time.perf_counter() - started, 1)
    for name, alpha in (("distilled", "0.5"), ("labels_only", "0")):
        started = time.perf_counter()
        subprocess.run([thawkit, "distill", "--teacher", str(work / "teacher"), "--student", "layers:3", *common,
                        "--distill-alpha", alpha, "--out", str(work / name)], env=env, check=True, capture_output=True)
        facts = json.loads((work / name / "distillation.json").read_text())
        results[name] = {**facts, "seconds": round(time.perf_counter() - started, 1)}
    sst2.finish(results, args.out)


if __name__ == "__main__":
    main()
