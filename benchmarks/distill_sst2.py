"""Distillation on SST-2: a 3-layer student of a fine-tuned 6-layer MiniLM-L6 teacher.

Teacher: full fine-tuning on N SST-2 sentences (GLUE dev as validation). Students, same data,
epochs and seed: `thawkit distill --student layers:3` (soft targets, alpha 0.5, T 2) and the same
3-layer student trained on the labels alone (alpha 0). Reports the teacher's and students'
validation accuracy, the share retained and the measured inference speed-up (distillation.json).

    python benchmarks/distill_sst2.py --train-size 2000 --out benchmarks/results/distill_sst2.json

"Prototype with the LLM, deploy small": a decoder teacher and an encoder student, whose soft targets
come from the teacher's own tokenizer; ``--unlabeled-size U`` more SST-2 training sentences (not the
N labelled ones) go to the distilled student as ``--unlabeled`` text the teacher labels:

    python benchmarks/distill_sst2.py --train-size 2000 --teacher-model smollm2-135m --teacher-strategy gradual \
        --student minilm-l6 --unlabeled-size 6000 --out benchmarks/results/distill_sst2_decoder.json
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
    parser.add_argument("--teacher-model", default=None, help="the teacher's --model (default: thawkit's default encoder)")
    parser.add_argument("--teacher-strategy", default="full")
    parser.add_argument("--student", default="layers:3", help="distill --student: layers:N or a model")
    parser.add_argument("--unlabeled-size", type=int, default=0, help="more training sentences given as --unlabeled text")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distill_sst2.json")
    args = parser.parse_args()
    sst2 = Sst2Work("distill", args.train_size)
    work, env, thawkit = sst2.folder, ENV, THAWKIT
    common = sst2.data_flags("--epochs", str(args.epochs), "--max-length", "64", "--metric", "accuracy")
    results: dict[str, object] = {"train_size": args.train_size, "epochs": args.epochs, "validation": 872,
                                  "teacher_model": args.teacher_model or "default", "teacher_strategy": args.teacher_strategy,
                                  "student": args.student, "unlabeled_size": args.unlabeled_size}
    unlabeled = _unlabeled(sst2, args.unlabeled_size, work / "unlabeled.txt") if args.unlabeled_size else []
    started = time.perf_counter()
    teacher_model = ["--model", args.teacher_model] if args.teacher_model else []
    _run([thawkit, "train", *common, *teacher_model, "--strategy", args.teacher_strategy, "--out", str(work / "teacher")], env)
    results["teacher_seconds"] = round(time.perf_counter() - started, 1)
    students = [("distilled", "0.5", []), ("labels_only", "0", [])]
    if unlabeled:
        students.insert(1, ("distilled_unlabeled", "0.5", unlabeled))
    for name, alpha, extra in students:
        started = time.perf_counter()
        _run([thawkit, "distill", "--teacher", str(work / "teacher"), "--student", args.student, *common, "--distill-alpha", alpha,
              *extra, "--out", str(work / name)], env)
        facts = json.loads((work / name / "distillation.json").read_text())
        results[name] = {**facts, "seconds": round(time.perf_counter() - started, 1)}
        print(name, facts["student_value"], facts["teacher_value"], facts["speedup"], flush=True)
    sst2.finish(results, args.out)


def _unlabeled(sst2: Sst2Work, size: int, path: Path) -> list[str]:
    """``size`` SST-2 training sentences that are not among the labelled ones, one per line."""
    import pandas as pd

    from cache_vs_trainer import SST2

    labelled = set(pd.read_csv(sst2.train, sep="\t", quoting=3)["sentence"])
    pool = pd.read_csv(SST2 / "train.tsv", sep="\t", quoting=3)
    pool = pool[~pool["sentence"].isin(labelled)].sample(n=size, random_state=1)
    path.write_text("\n".join(pool["sentence"].str.strip()) + "\n")
    return ["--unlabeled", str(path)]


def _run(command: list[str], env: dict) -> None:
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


if __name__ == "__main__":
    main()
