"""`thawkit compare --models minilm-l6,smollm2-135m`: an encoder and a decoder, several strategies,
one command, SST-2: N training sentences and M validation sentences, sampled (seed 0) from the
dataset's train.tsv and validation.tsv (the held-out part of GLUE train), as the other SST-2 benchmarks.

Defaults otherwise (learning rates from each strategy's own default or the measured table). What
it records: per model x strategy the validation accuracy, trainable share, train seconds, peak
memory, size on disk, and the wrong-model-size verdict, as `thawkit compare` wrote them.

    python benchmarks/compare_models.py --train-size 2000 --epochs 3 --strategies frozen,lora,ia3,prompt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from sst2_cli import THAWKIT, Sst2Work, run_compare  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=872)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--models", default="minilm-l6,smollm2-135m")
    parser.add_argument("--strategies", default="frozen,lora,ia3,prompt")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compare_models.json")
    args = parser.parse_args()
    sst2 = Sst2Work("models", args.train_size, args.val_size)
    out = sst2.folder / "cmp"
    command = [THAWKIT, "compare", *sst2.data_flags("--epochs", str(args.epochs), "--max-length", str(args.max_length)),
               "--models", args.models, "--strategies", args.strategies, "--no-advise", "--out", str(out)]
    results, seconds, stdout = run_compare(command, out)
    keep = ("name", "model", "strategy", "validation_accuracy_mean", "validation_macro_f1_mean", "trainable_percent",
            "total_params", "size_on_disk_mb", "train_seconds_mean", "peak_memory_mb", "failed_runs")
    sst2.finish({"train_size": args.train_size, "validation": args.val_size, "epochs": args.epochs,
                 "max_length": args.max_length, "command_seconds": round(seconds, 1),
                 "command": " ".join(["thawkit", *command[1:]]).replace(str(sst2.folder), "$WORK"),
                 "rows": [{k: row.get(k) for k in keep} for row in results["results"]],
                 "winner": results["winner"], "models_advice": results["models_advice"],
                 "console": stdout[-3000:]}, args.out)


if __name__ == "__main__":
    main()
