"""Distillation on CoNLL-2003 NER: a 3-layer student of a fine-tuned 6-layer MiniLM-L6 teacher.

Teacher: `thawkit train --task ner --strategy full` on the first N training sentences (validation:
the first 1,000 of validation.txt). Students, same data, epochs and seed: `thawkit distill
--student layers:3` (per-token soft targets, alpha 0.5, T 2) and the same 3-layer student on the
labels alone (alpha 0), and the distilled student with hidden-state matching (weight 1). Reports validation entity F1, the share kept and the measured speed-up
(distillation.json). With `--unlabeled-size U`, the U training sentences after the first N are given
to the distilled students as unlabeled text (`distill --unlabeled`, words joined by spaces): the
teacher tags them and they extend the student's training set; the labels-only student never sees them.

    python benchmarks/distill_conll.py --train-size 2000
    python benchmarks/distill_conll.py --train-size 2000 --unlabeled-size 6000 --student-epochs 4
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from defaults_sweep import SHARED, _subset_conll  # noqa: E402
from sst2_cli import ENV, THAWKIT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--student-epochs", type=float, default=None, help="default: --epochs")
    parser.add_argument("--unlabeled-size", type=int, default=0)
    parser.add_argument("--students", default="distilled,distilled_hidden,labels_only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distill_conll.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="thawkit-distill-conll-"))
    train = _subset_conll(SHARED / "conll2003" / "train.txt", work / "train.txt", args.train_size)
    validation = _subset_conll(SHARED / "conll2003" / "validation.txt", work / "validation.txt", 1000)
    common = ["--task", "ner", "--data", str(train), "--validation", str(validation), "--progress", "off",
              "--no-measure-forgetting"]
    student_epochs = args.student_epochs if args.student_epochs is not None else args.epochs
    results: dict = {"train_size": args.train_size, "epochs": args.epochs, "student_epochs": student_epochs,
                     "unlabeled_size": args.unlabeled_size, "validation_sentences": 1000}
    unlabeled: list[str] = []
    if args.unlabeled_size:
        words_file = _subset_conll(SHARED / "conll2003" / "train.txt", work / "all.txt", args.train_size + args.unlabeled_size)
        sentences = words_file.read_text(encoding="utf-8").split("\n\n")[args.train_size:]
        (work / "unlabeled.txt").write_text("\n".join(" ".join(line.split()[0] for line in s.splitlines() if line.strip())
                                                      for s in sentences) + "\n", encoding="utf-8")
        unlabeled = ["--unlabeled", str(work / "unlabeled.txt")]
    started = time.perf_counter()
    subprocess.run([THAWKIT, "train", *common, "--epochs", str(args.epochs), "--strategy", "full", "--out", str(work / "teacher")],
                   env=ENV, check=True, capture_output=True)
    results["teacher_seconds"] = round(time.perf_counter() - started, 1)
    variants = {"distilled": ("0.5", "0"), "distilled_hidden": ("0.5", "1"), "labels_only": ("0", "0")}
    for name in args.students.split(","):
        alpha, hidden = variants[name]
        extra = unlabeled if alpha != "0" else []
        started = time.perf_counter()
        proc = subprocess.run([THAWKIT, "distill", "--teacher", str(work / "teacher"), "--student", "layers:3", *common,
                               "--epochs", str(student_epochs), *extra, "--distill-alpha", alpha,
                               "--distill-hidden-weight", hidden, "--out", str(work / name)],
                              env=ENV, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-4000:])
        facts = json.loads((work / name / "distillation.json").read_text())
        results[name] = {**facts, "seconds": round(time.perf_counter() - started, 1)}
        print(name, json.dumps(results[name]), flush=True)
    results["command"] = " ".join(["python", "benchmarks/distill_conll.py", *sys.argv[1:]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
