"""`thawkit update` on real data, as a user runs it: a run trained with only data, task and strategy,
then updated on new data with and without replay, against retraining from scratch on everything
(what a user would otherwise do). Reports the run's own validation examples (old) and the new
data's before / after, the test set, the forgetting and the time.

    python benchmarks/update_replay.py [--datasets sst2,chemprot] [--strategies full,lora]

SST-2 (new data, same classes): 2,000 training sentences (seed 0), then 2,000 others (seed 1);
validation a 10% split of each; test the GLUE dev set (872).
ChemProt (new classes): the run learns the 6 largest relations (train / dev rows of those), the
update brings the 7 others (their train rows; their dev rows validate); test: the whole test set
(all 13 relations, micro-F1 = accuracy), so the old run cannot score the new relations' rows.
Replay settings (--replays): 0 (none), "default" (as many old examples as new ones: thawkit's default when
this was measured; now the default is all), all old examples.
Results: benchmarks/results/update_replay.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from calibration_slices import write_frames  # benchmarks/ is on the path when a script runs

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RESULTS = Path(__file__).resolve().parent / "results" / "update_replay.json"
THAWKIT = str(Path(sys.executable).parent / "thawkit")
OLD_RELATIONS = ["INHIBITOR", "INDIRECT-DOWNREGULATOR", "SUBSTRATE", "INDIRECT-UPREGULATOR", "ACTIVATOR", "ANTAGONIST"]


def sst2(folder: Path) -> dict[str, Path]:
    train = pd.read_csv(DATASETS / "sst2" / "train.tsv", sep="\t", quoting=3).rename(columns={"sentence": "text"})
    picked = train.sample(4000, random_state=0).reset_index(drop=True)
    test = pd.read_csv(DATASETS / "sst2" / "test.tsv", sep="\t", quoting=3).rename(columns={"sentence": "text"})
    return write_frames(folder, {"old": picked.iloc[:2000], "new": picked.iloc[2000:], "all": picked, "test": test})


def chemprot(folder: Path) -> dict[str, Path]:
    frames = {name: pd.read_json(DATASETS / "chemprot" / f"{name}.jsonl", lines=True)[["text", "label"]]
              for name in ("train", "dev", "test")}
    old = frames["train"]["label"].isin(OLD_RELATIONS)
    old_dev = frames["dev"]["label"].isin(OLD_RELATIONS)
    return write_frames(folder, {"old": frames["train"][old], "old_validation": frames["dev"][old_dev],
                           "new": frames["train"][~old], "new_validation": frames["dev"][~old_dev],
                           "all": frames["train"], "all_validation": frames["dev"], "test": frames["test"],
                           "old_test": frames["test"][frames["test"]["label"].isin(OLD_RELATIONS)]})


def _thawkit(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([THAWKIT, *args, "--progress", "off", "--no-measure-forgetting"], check=True)
    return time.perf_counter() - started


def _test_accuracy(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["test"]["accuracy"]


def bench(dataset: str, strategy: str, files: dict[str, Path], folder: Path, replays: list[str], retrain: bool = True) -> dict:
    validation = {"old": ["--validation", str(files["old_validation"])] if "old_validation" in files else [],
                  "new": ["--validation", str(files["new_validation"])] if "new_validation" in files else [],
                  "all": ["--validation", str(files["all_validation"])] if "all_validation" in files else []}
    old = folder / f"{dataset}-{strategy}-old"
    # A run that never saw the new classes cannot be tested on their rows: its test is the old classes' rows.
    old_test = files.get("old_test", files["test"])
    seconds = _thawkit("train", "--data", str(files["old"]), *validation["old"], "--test", str(old_test), "--strategy", strategy,
                       "--out", str(old))
    row = {"dataset": dataset, "strategy": strategy, "old": {"seconds": seconds, "test_accuracy": _test_accuracy(old),
                                                             "tested_on": old_test.name}}
    pool = len(pd.read_csv(files["old"]))
    settings = {"0": ("replay 0", "0"), "default": ("replay default", None), "all": ("replay all", str(pool))}
    for name, replay in (settings[r] for r in replays):
        out = folder / f"{dataset}-{strategy}-{name.replace(' ', '-')}"
        extra = ["--replay", replay] if replay is not None else []
        seconds = _thawkit("update", str(old), "--data", str(files["new"]), *validation["new"], "--test", str(files["test"]),
                           "--out", str(out), "--accept-forgetting", *extra)
        report = json.loads((out / "update.json").read_text())
        row[name] = {"seconds": seconds, "test_accuracy": _test_accuracy(out), "replayed": report["replayed_examples"],
                     "metric": report["metric"], "forgetting": report["forgetting"], "verdict_at_default_tolerance":
                     "kept" if report["forgetting"] <= 0.01 else "refused",
                     "old_validation": report["old_validation"], "new_validation": report["new_validation"]}
        print(json.dumps({"dataset": dataset, "strategy": strategy, "setting": name, **{k: v for k, v in row[name].items()
                          if k not in ("old_validation", "new_validation")}}), flush=True)
    if not retrain:
        return row
    scratch = folder / f"{dataset}-{strategy}-scratch"
    seconds = _thawkit("train", "--data", str(files["all"]), *validation["all"], "--test", str(files["test"]), "--strategy", strategy,
                       "--out", str(scratch))
    row["retrain on all"] = {"seconds": seconds, "test_accuracy": _test_accuracy(scratch)}
    print(json.dumps({"dataset": dataset, "strategy": strategy, "setting": "retrain on all", **row["retrain on all"]}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="sst2,chemprot")
    parser.add_argument("--strategies", default="full,lora")
    parser.add_argument("--replays", default="0,default,all", help="replay settings: 0, default, all")
    parser.add_argument("--no-retrain", action="store_true", help="skip retraining from scratch on all the data")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for dataset in args.datasets.split(","):
            data = folder / dataset
            data.mkdir()
            files = {"sst2": sst2, "chemprot": chemprot}[dataset](data)
            for strategy in args.strategies.split(","):
                row = bench(dataset, strategy, files, folder, args.replays.split(","), not args.no_retrain)
                results[f"{dataset}/{strategy}"] = {**results.get(f"{dataset}/{strategy}", {}), **row}  # settings run apart merge
                RESULTS.parent.mkdir(exist_ok=True)
                RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
