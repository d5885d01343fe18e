"""Measure each strategy's defaults against a sweep of its own settings, on real data.

For every dataset and strategy: LR over 5 log-spaced points 1e-5 .. 1e-3 x head multiplier {1, 10}
(frozen: pooling {checkpoint, cls} x head {linear, logreg, mlp}), one seed, the default epochs; then
the defaults themselves (nothing but data, task and strategy given) at the default epochs and at 1
epoch. Results go to benchmarks/results/defaults_<dataset>.json; docs/defaults.md is written from them.

    python benchmarks/defaults_sweep.py --datasets sst2 [--points 5] [--strategies full,gradual]

Runs on the embedded MiniLM-L6; needs ../shared/datasets/.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results"


def _subset_tsv(source: Path, target: Path, n: int, seed: int = 0) -> Path:
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    random.Random(seed).shuffle(body)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerows([header, *body[:n]])
    return target


def _subset_conll(source: Path, target: Path, n: int) -> Path:
    """The first ``n`` sentences of a CoNLL file (document markers dropped)."""
    sentences, current = [], []
    for line in source.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
        elif not line.startswith("-DOCSTART-"):
            current.append(line)
    if current:
        sentences.append(current)
    target.write_text("\n\n".join("\n".join(s) for s in sentences[:n]) + "\n", encoding="utf-8")
    return target


def conll_subsets(prefix: str, sizes: list[int]) -> tuple[Path, dict[int, Path]]:
    """In a new temporary folder: the first 1,000 CoNLL-2003 validation sentences and, per size, the
    first ``size`` training sentences (the CoNLL files the size and advisor benchmarks share)."""
    folder = Path(tempfile.mkdtemp(prefix=f"thawkit-{prefix}-conll-"))
    validation = _subset_conll(SHARED / "conll2003" / "validation.txt", folder / "validation.txt", 1000)
    return validation, {size: _subset_conll(SHARED / "conll2003" / "train.txt", folder / f"train-{size}.txt", size)
                        for size in sizes}


def _split_squad(source: Path, work: Path, train_questions: int, validation_questions: int) -> tuple[Path, Path]:
    """Split SQuAD by article: whole articles go to train until ``train_questions``, then to validation."""
    articles = json.loads(source.read_text(encoding="utf-8"))["data"]
    random.Random(0).shuffle(articles)
    parts: dict[str, list] = {"train": [], "validation": []}
    counts = {"train": 0, "validation": 0}
    limits = {"train": train_questions, "validation": validation_questions}
    for article in articles:
        part = "train" if counts["train"] < limits["train"] else "validation"
        if counts[part] >= limits[part]:
            break
        parts[part].append(article)
        counts[part] += sum(len(p["qas"]) for p in article["paragraphs"])
    paths = []
    for part in ("train", "validation"):
        path = work / f"squad-{part}.json"
        path.write_text(json.dumps({"version": "1.1", "data": parts[part]}), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def datasets(work: Path) -> dict[str, dict]:
    """name -> train options (task, data, validation, metric)."""
    squad_train, squad_validation = _split_squad(SHARED / "squad/dev-v1.1.json", work, 1000, 500)
    return {
        "conll": {"task": "ner", "data": _subset_conll(SHARED / "conll2003/train.txt", work / "conll-1k.txt", 1000),
                  "validation": SHARED / "conll2003/validation.txt", "report": "f1"},
        "squad": {"task": "qa", "data": squad_train, "validation": squad_validation, "report": "f1"},
        "sst2": {"task": "classification", "data": _subset_tsv(SHARED / "sst2/train.tsv", work / "sst2-2k.tsv", 2000),
                 "validation": SHARED / "sst2/test.tsv", "report": "accuracy"},
        "chemprot": {"task": "classification", "data": SHARED / "chemprot/train.jsonl", "validation": SHARED / "chemprot/dev.jsonl",
                     "report": "macro_f1"},
        "stsb": {"task": "similarity", "data": _subset_tsv(SHARED / "stsb/train.tsv", work / "stsb-2k.tsv", 2000),
                 "validation": SHARED / "stsb/validation.tsv", "report": "spearman"},
    }


def grid(strategy: str, points: int, lrs: list[float] | None = None, mults: tuple[float, ...] = (1.0, 10.0),
         task: str = "classification") -> list[dict]:
    if strategy == "frozen" and task == "classification":  # pooled heads; other tasks train a token/span head
        return [{"strategy_options": {"pooling": p, "head": h}} for p in ("auto", "cls") for h in ("linear", "logreg", "mlp")]
    lrs = lrs or [10 ** (-5 + 2 * i / (points - 1)) for i in range(points)]
    return [{"lr": round(lr, 7), "head_lr_mult": mult} for lr in lrs for mult in mults]


def run_one(options: dict, out: Path) -> dict:
    """Train with ``options`` (only what is given: everything else is thawkit's default)."""
    import thawkit

    options = dict(options)
    report = options.pop("report")
    started = time.perf_counter()
    try:
        run = thawkit.train(**options, out=out, overwrite=True, progress="off", measure_forgetting=False)
    except thawkit.ThawkitError as exc:  # e.g. logreg on multi-label; a diverged LR
        return {"error": str(exc), "seconds": round(time.perf_counter() - started, 1)}
    validation = run.metrics["validation"]
    return {"value": validation.get(report), "metric": report, "macro_f1": validation.get("macro_f1"), "failed": run.info.get("failed"),
            "seconds": round(time.perf_counter() - started, 1), "resolved": run.info.get("strategy_resolved"),
            # What the run actually used, so a defaults entry says which defaults it measured.
            "used": {"lr": run.info.get("learning_rate"), "head_lr_mult": run.info.get("config", {}).get("head_lr_mult"),
                     "epochs": run.info.get("config", {}).get("epochs"), "defaults_source": run.info.get("defaults_source")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="sst2")
    parser.add_argument("--strategies", default="frozen,partial,gradual,llrd,lora,full")
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--lrs", default=None, help="comma-separated learning rates instead of --points")
    parser.add_argument("--mults", default="1,10", help="head LR multipliers to sweep")
    parser.add_argument("--epochs", type=float, default=None, help="sweep at this many epochs (default: the defaults')")
    parser.add_argument("--skip-sweep", action="store_true", help="only the defaults")
    parser.add_argument("--skip-defaults", action="store_true", help="only the sweep")
    parser.add_argument("--defaults-at", default="default,1", help="epoch counts the defaults run at ('default': none given)")
    parser.add_argument("--seeds", default="42", help="seeds of the defaults runs (42 is recorded without a suffix)")
    parser.add_argument("--options", default=None,
                        help='JSON list of strategy options swept at each point, e.g. \'[{"feature_layer": -1}, {"feature_layer": -3}]\'')
    parser.add_argument("--sweep-seeds", default="42", help="seeds of each sweep point (42 is recorded without a seed field)")
    args = parser.parse_args()
    sweep_seeds = [int(x) for x in args.sweep_seeds.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        table = datasets(work)
        for name in args.datasets.split(","):
            base = {k: v for k, v in table[name].items()}
            path = RESULTS / f"defaults_{name}.json"
            results = json.loads(path.read_text()) if path.exists() else {}
            for strategy in args.strategies.split(","):
                entry = results.setdefault(strategy, {"sweep": [], "defaults": {}})
                if not args.skip_sweep:
                    lrs = [float(x) for x in args.lrs.split(",")] if args.lrs else None
                    option_sets = json.loads(args.options) if args.options else [None]
                    points = grid(strategy, args.points, lrs, tuple(float(m) for m in args.mults.split(",")), base["task"])
                    for point, options, seed in itertools.product(points, option_sets, sweep_seeds):
                        setting = {**point, **({"strategy_options": {**point.get("strategy_options", {}), **options}} if options else {}),
                                   **({"epochs": args.epochs} if args.epochs else {}), **({"seed": seed} if seed != 42 else {})}
                        outcome = run_one({**base, "strategy": strategy, **setting}, work / "run")
                        entry["sweep"].append({**setting, **outcome})
                        print(name, strategy, setting, outcome, flush=True)
                        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
                at = [None if e == "default" else float(e) for e in args.defaults_at.split(",")]
                for epochs in (() if args.skip_defaults else at):
                    for seed in (int(x) for x in args.seeds.split(",")):
                        options = {**base, "strategy": strategy, **({"epochs": epochs} if epochs else {}),
                                   **({"seed": seed} if seed != 42 else {})}
                        outcome = run_one(options, work / "run")
                        key = f"{epochs:g} epoch{'s' if epochs != 1 else ''}" if epochs else "default epochs"
                        entry["defaults"][key + (f" seed {seed}" if seed != 42 else "")] = outcome
                        print(name, strategy, "defaults", epochs or "default", "seed", seed, outcome, flush=True)
                path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("written", RESULTS, file=sys.stderr)


if __name__ == "__main__":
    main()
