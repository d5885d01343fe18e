"""Long documents: `--long-text window` (mean and max pooling) against truncation, on documents
longer than `--max-length`, as a user runs them (`thawkit train` with data, strategy and the flag).

    python benchmarks/long_documents.py [--strategies full] [--seeds 0] [--docs 1000,500] [--snippets 16]

The documents are built from real public text: SST-2 phrases (GLUE SST-2 training data,
`../shared/datasets/sst2/validation.tsv`, Socher et al. 2013; phrases of 6+ words), 16 per
document, 10 of one sentiment and 6 of the other in a random order; the document's label is the
majority. That is a review whose verdict is spread over all of it: the first 128 tokens (about 6
phrases) often lean the other way. Training and test documents draw on disjoint phrases (70/30).
Results: benchmarks/results/long_documents.json.
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
RESULTS = Path(__file__).resolve().parent / "results" / "long_documents.json"
THAWKIT = str(Path(sys.executable).parent / "thawkit")
MODES = {"truncate": ["--long-text", "truncate"], "window-mean": ["--long-text", "window", "--window-pooling", "mean"],
         "window-max": ["--long-text", "window", "--window-pooling", "max"],
         # The other fix a user has: a max length that holds the whole document (MiniLM has 512 positions).
         "truncate-512": ["--long-text", "truncate", "--max-length", "512"]}


def documents(count: int, snippets: int, pools: dict[int, list[str]], rng: np.random.Generator) -> pd.DataFrame:
    majority, minority = snippets * 5 // 8, snippets - snippets * 5 // 8  # 10 and 6 of 16
    rows = []
    for i in range(count):
        label = i % 2
        chosen = [*rng.choice(pools[label], majority, replace=False), *rng.choice(pools[1 - label], minority, replace=False)]
        rng.shuffle(chosen)
        rows.append((" ".join(s.strip() for s in chosen), "positive" if label else "negative"))
    return pd.DataFrame(rows, columns=["text", "label"]).sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)


def build(folder: Path, train_docs: int, test_docs: int, snippets: int, seed: int) -> dict[str, Path]:
    phrases = pd.read_csv(DATASETS / "sst2" / "validation.tsv", sep="\t", quoting=3)
    phrases = phrases[phrases["sentence"].str.split().str.len() >= 6].sample(frac=1.0, random_state=seed)
    cut = int(len(phrases) * 0.7)
    rng = np.random.default_rng(seed)
    files = {}
    for name, part, count in (("train", phrases[:cut], train_docs), ("test", phrases[cut:], test_docs)):
        pools = {label: part[part["label"] == label]["sentence"].tolist() for label in (0, 1)}
        files[name] = folder / f"{name}.csv"
        documents(count, snippets, pools, rng).to_csv(files[name], index=False)
    return files


def run(files: dict[str, Path], strategy: str, mode: str, seed: int, folder: Path) -> dict:
    out = folder / f"{strategy}-{mode}-{seed}"
    started = time.perf_counter()
    subprocess.run([THAWKIT, "train", "--data", str(files["train"]), "--test", str(files["test"]), "--strategy", strategy,
                    "--seed", str(seed), "--out", str(out), "--progress", "off", "--no-measure-forgetting", *MODES[mode]], check=True)
    seconds = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return {"strategy": strategy, "mode": mode, "seed": seed, "seconds": round(seconds, 1),
            "test_accuracy": metrics["test"]["accuracy"], "test_macro_f1": metrics["test"]["macro_f1"],
            "validation_accuracy": metrics["validation"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategies", default="full")
    parser.add_argument("--modes", default="truncate,window-mean,window-max")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--docs", default="1000,500")
    parser.add_argument("--snippets", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    train_docs, test_docs = (int(x) for x in args.docs.split(","))
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    done = {(r["strategy"], r["mode"], r["seed"]) for r in results["runs"]}
    with tempfile.TemporaryDirectory(prefix="thawkit-long-") as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            files = build(Path(tmp), train_docs, test_docs, args.snippets, seed)
            if "tokens" not in results:
                from transformers import AutoTokenizer

                from thawkit.models.backbone import resolve_model_path

                tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm-l6"))
                lengths = [len(ids) for ids in tokenizer(pd.read_csv(files["test"])["text"].tolist())["input_ids"]]
                results["tokens"] = {"p50": float(np.median(lengths)), "min": min(lengths), "max": max(lengths)}
            for strategy in args.strategies.split(","):
                for mode in args.modes.split(","):
                    if (strategy, mode, seed) in done:
                        continue
                    results["runs"].append(run(files, strategy, mode, seed, Path(tmp)))
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(results, indent=2) + "\n")
                    print(json.dumps(results["runs"][-1]), flush=True)


if __name__ == "__main__":
    main()
