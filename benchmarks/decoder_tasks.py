"""The embedded decoder beside the embedded encoder on token tasks: `thawkit compare --models` on
CoNLL-2003 NER and SQuAD extractive QA, every strategy asked for, the defaults otherwise.

CoNLL: the first N training sentences, the first 1,000 validation sentences (the files the size and
advisor benchmarks share). SQuAD: the dev file split by article (seed 0) into N training and M
validation questions (defaults_sweep's split; not comparable with published dev scores). One seed,
one job at a time; the metric is entity F1 (seqeval) / SQuAD F1, as `thawkit compare` reports it.

    python benchmarks/decoder_tasks.py --datasets conll --strategies full,partial,gradual,llrd,lora,ia3,dora,prompt
    python benchmarks/decoder_tasks.py --datasets squad --strategies lora,full --epochs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from defaults_sweep import SHARED, _split_squad, conll_subsets  # noqa: E402
from sst2_cli import THAWKIT, run_compare  # noqa: E402

KEEP = ("name", "model", "strategy", "trainable_percent", "total_params", "size_on_disk_mb", "train_seconds_mean",
        "peak_memory_mb", "failed_runs")


def data_flags(dataset: str, train_size: int, val_size: int) -> list[str]:
    if dataset == "conll":
        validation, trains = conll_subsets("decoder", [train_size])
        return ["--task", "ner", "--data", str(trains[train_size]), "--validation", str(validation)]
    work = Path(tempfile.mkdtemp(prefix="thawkit-decoder-squad-"))
    train, validation = _split_squad(SHARED / "squad" / "dev-v1.1.json", work, train_size, val_size)
    return ["--task", "qa", "--data", str(train), "--validation", str(validation)]


def planned(row: dict) -> dict:
    """The learning rate, epochs and max length the planner gave the row's first run."""
    config = json.loads((Path(row["runs"][0]) / "thawkit.json").read_text())["config"]
    return {k: config.get(k) for k in ("lr", "epochs", "max_length")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="conll,squad")
    parser.add_argument("--models", default="minilm-l6,smollm2-135m")
    parser.add_argument("--strategies", default="full,partial,gradual,llrd,lora,ia3,dora,prompt")
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--squad-validation", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=None, help="default: the planner's")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decoder_tasks.json")
    args = parser.parse_args()
    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    for dataset in args.datasets.split(","):
        out = Path(tempfile.mkdtemp(prefix=f"thawkit-decoder-{dataset}-")) / "cmp"
        command = [THAWKIT, "compare", *data_flags(dataset, args.train_size, args.squad_validation),
                   "--models", args.models, "--strategies", args.strategies, "--progress", "off",
                   "--no-measure-forgetting", "--no-advise", "--out", str(out)]
        if args.epochs is not None:
            command += ["--epochs", str(args.epochs)]
        payload, seconds, _ = run_compare(command, out, f"{dataset} compare")
        metric = payload["metric"]
        rows = [{**{k: row.get(k) for k in KEEP}, "validation": row.get(f"validation_{metric}_mean"), **planned(row)}
                for row in payload["results"]]
        key = f"{dataset}-{args.train_size}"
        previous = results.get(key, {}).get("rows", [])
        fresh = {(r["model"], r["strategy"]) for r in rows}
        results[key] = {
            "metric": metric, "train_size": args.train_size, "command_seconds": round(seconds, 1),
            "command": " ".join(["thawkit", *command[1:]]),
            "rows": [r for r in previous if (r["model"], r["strategy"]) not in fresh] + rows,
            "winner": payload["winner"], "models_advice": payload.get("models_advice"),
        }
        for row in rows:
            print(f"{dataset} {row['model']:>14s} {row['strategy']:>8s} {metric} {row['validation']:.4f}  "
                  f"{row['train_seconds_mean']:.1f}s  {row['peak_memory_mb']:.0f} MB", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    results["script"] = " ".join(["python", "benchmarks/decoder_tasks.py", *sys.argv[1:]])
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
