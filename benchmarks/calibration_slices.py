"""Calibration and slices on real data, as a user runs them: `thawkit train` with only data, task and
strategy (calibration is on by default), `--slice-col` on columns the script adds, then test ECE
and Brier before / after temperature scaling, whether any test prediction changed class, and the
worst slice.

    python benchmarks/calibration_slices.py [--datasets sst2,chemprot] [--strategies full,lora,frozen]

SST-2: 2,000 training sentences sampled from train.tsv (seed 0), validation a 10% split of them,
test = the GLUE dev set (872). ChemProt: train / dev / test as published (4,169 / 2,427 / 3,469).
Slice columns: `length` (word-count terciles of the test texts: short / medium / long), and for
ChemProt `distance` (words between the two marked entities: 0-5, 6-15, 16+).
Results: benchmarks/results/calibration_slices.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RESULTS = Path(__file__).resolve().parent / "results" / "calibration_slices.json"
THAWKIT = str(Path(sys.executable).parent / "thawkit")


def _length_buckets(frames: dict[str, pd.DataFrame]) -> None:
    words = frames["test"]["text"].str.split().str.len()  # terciles of the split the slices are read on
    low, high = np.quantile(words, [1 / 3, 2 / 3])
    for frame in frames.values():
        n = frame["text"].str.split().str.len()
        frame["length"] = np.where(n <= low, "short", np.where(n <= high, "medium", "long"))


def sst2(folder: Path) -> dict[str, Path]:
    train = pd.read_csv(DATASETS / "sst2" / "train.tsv", sep="\t", quoting=3).rename(columns={"sentence": "text"})
    frames = {"train": train.sample(2000, random_state=0).reset_index(drop=True),
              "test": pd.read_csv(DATASETS / "sst2" / "test.tsv", sep="\t", quoting=3).rename(columns={"sentence": "text"})}
    _length_buckets(frames)
    return write_frames(folder, frames)


def chemprot(folder: Path) -> dict[str, Path]:
    frames = {name: pd.read_json(DATASETS / "chemprot" / f"{file}.jsonl", lines=True)[["text", "label"]]
              for name, file in (("train", "train"), ("validation", "dev"), ("test", "test"))}
    _length_buckets(frames)
    for frame in frames.values():
        # Words between the two marked entities: long-distance relations are the harder ones.
        between = frame["text"].str.extract(r"(?:>>|\]\])(.*?)(?:<<|\[\[)", expand=False).fillna("").str.split().str.len()
        frame["distance"] = np.where(between <= 5, "0-5 words apart", np.where(between <= 15, "6-15 words apart", "16+ words apart"))
    return write_frames(folder, frames)


def write_frames(folder: Path, frames: dict[str, pd.DataFrame]) -> dict[str, Path]:
    """Each frame as FOLDER/NAME.csv (benchmarks/update_replay.py uses it too)."""
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def run(dataset: str, strategy: str, files: dict[str, Path], slices: list[str], folder: Path) -> dict:
    out = folder / f"{dataset}-{strategy}"
    command = [THAWKIT, "train", "--data", str(files["train"]), "--test", str(files["test"]), "--strategy", strategy,
               "--out", str(out), "--progress", "off", "--no-measure-forgetting", "--slice-col", ",".join(slices)]
    if "validation" in files:
        command += ["--validation", str(files["validation"])]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "thawkit.json").read_text())
    test = metrics["test"]
    calibration = test.get("calibration") or {}
    # The saved model is calibrated: the same test predictions as before scaling (argmax is unchanged).
    evaluated = subprocess.run([THAWKIT, "evaluate", str(out), "--data", str(files["test"]), "--json"], check=True,
                               capture_output=True, text=True)
    again = json.loads(evaluated.stdout)
    return {
        "dataset": dataset, "strategy": strategy, "seconds": round(seconds, 1), "calibration": info["calibration"],
        "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"], "test_micro_f1": test.get("micro_f1"),
        "test_ece_uncalibrated": calibration.get("ece_uncalibrated", test["ece"]), "test_ece": test["ece"],
        "test_brier_uncalibrated": calibration.get("brier_uncalibrated", test["brier"]), "test_brier": test["brier"],
        "saved_model_test_accuracy": again["accuracy"], "saved_model_test_ece": again["ece"],
        "slices": {column: {k: v for k, v in table.items()} for column, table in test.get("slices", {}).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="sst2,chemprot")
    parser.add_argument("--strategies", default="full,lora,frozen")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    done = {(r["dataset"], r["strategy"]) for r in results["runs"]}
    with tempfile.TemporaryDirectory(prefix="thawkit-calibration-") as tmp:
        folder = Path(tmp)
        for dataset in args.datasets.split(","):
            files = {"sst2": sst2, "chemprot": chemprot}[dataset](folder)
            slices = ["length"] + (["distance"] if dataset == "chemprot" else [])
            for strategy in args.strategies.split(","):
                if (dataset, strategy) in done:
                    continue
                results["runs"].append(run(dataset, strategy, files, slices, folder))
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n")
                print(json.dumps({k: v for k, v in results["runs"][-1].items() if k != "slices"}), flush=True)


if __name__ == "__main__":
    main()
