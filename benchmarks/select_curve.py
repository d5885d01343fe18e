"""`thawkit select` against random labeling: a learning curve in rounds of 16 labels.

Per dataset and seed, two labeling arms start from nothing and add 16 labels per round up to 128:
- select: round 1 `thawkit select --pool POOL --budget 16 --seed S` (diversity on the embeddings);
  later rounds `thawkit select ... --from-labeled LABELED --run RUN` (the run trained on what is
  labeled so far: its uncertainty x diversity);
- random: 16 more texts drawn at random from the pool (seeded).
The benchmark plays the annotator (it knows the gold labels). After every round `thawkit train
--strategy fewshot` (defaults) trains on the labeled texts and is scored on the test set. Pools:
SST-2 a fixed 3,000-sentence sample of train.tsv (seed 0), test GLUE dev (872); Financial
PhraseBank AllAgree the pool of benchmarks/fewshot_vs_setfit.py (70%), test its 30%.

    python benchmarks/select_curve.py --datasets sst2,fpb --seeds 0,1,2,3,4
    python benchmarks/select_curve.py --summary        # table + docs/images/select_curve.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from fewshot_vs_setfit import ENV, THAWKIT, load_dataset, write_csv  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "select_curve.json"
PICTURE = ROOT / "docs" / "images" / "select_curve.png"
ROUND, LAST = 16, 128


def thawkit(*args: str) -> None:
    proc = subprocess.run([THAWKIT, *args], env=ENV, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"thawkit {' '.join(args[:1])} failed:\n{proc.stderr[-3000:]}")


def train_and_score(labeled: list[int], texts: list[str], labels: list[str], test: Path, folder: Path) -> tuple[float, Path | None]:
    """Train fewshot on the labeled texts and score it on the test set. Labels that lack a class
    of the test set cannot train a classifier for it (thawkit refuses: exit 2); such a round scores
    what a user without a model has, the labeled majority class answered for every test text."""
    data = folder / "labeled.csv"
    write_csv(data, [texts[i] for i in labeled], [labels[i] for i in labeled])
    import pandas as pd

    gold = pd.read_csv(test, dtype=str, keep_default_na=False)["label"].tolist()
    have = [labels[i] for i in labeled]
    if not set(gold) <= set(have):
        majority = max(sorted(set(have)), key=have.count)
        print(f"  {len(labeled)} labels lack {sorted(set(gold) - set(have))}: majority class scored", flush=True)
        return sum(g == majority for g in gold) / len(gold), None
    run = folder / "run"
    thawkit("train", "--data", str(data), "--test", str(test), "--strategy", "fewshot", "--out", str(run), "--progress", "off",
            "--overwrite", "--no-measure-forgetting")
    return json.loads((run / "metrics.json").read_text())["test"]["accuracy"], run


def select_arm(texts: list[str], labels: list[str], test: Path, folder: Path, seed: int) -> dict[int, float]:
    pool = folder / "pool.txt"
    pool.write_text("\n".join(texts) + "\n", encoding="utf-8")
    position = {text: i for i, text in enumerate(texts)}
    labeled: list[int] = []
    curve: dict[int, float] = {}
    run: Path | None = None
    while len(labeled) < LAST:
        picks = folder / "picks.csv"
        extra = ["--from-labeled", str(folder / "labeled.csv")] if labeled else []
        extra += ["--run", str(run)] if run is not None else []  # no run where the labels could not train one yet
        thawkit("select", "--pool", str(pool), "--budget", str(ROUND), "--seed", str(seed), "--out", str(picks), "--overwrite", *extra)
        import pandas as pd

        labeled += [position[text] for text in pd.read_csv(picks, dtype=str, keep_default_na=False)["text"]]
        curve[len(labeled)], run = train_and_score(labeled, texts, labels, test, folder)
        print("select", len(labeled), curve[len(labeled)], flush=True)
    return curve


def random_arm(texts: list[str], labels: list[str], test: Path, folder: Path, seed: int) -> dict[int, float]:
    order = np.random.default_rng(seed).permutation(len(texts)).tolist()
    curve = {}
    for size in range(ROUND, LAST + 1, ROUND):
        curve[size], _ = train_and_score(order[:size], texts, labels, test, folder)
        print("random", size, curve[size], flush=True)
    return curve


def pool_of(dataset: str) -> tuple[list[str], list[str], list[str], list[str]]:
    pool_t, pool_y, test_t, test_y = load_dataset(dataset)
    if dataset == "sst2":
        keep = np.random.default_rng(0).permutation(len(pool_t))[:3000]
        pool_t, pool_y = [pool_t[i] for i in keep], [pool_y[i] for i in keep]
    distinct = {}
    for text, label in zip(pool_t, pool_y):  # select works on distinct texts
        distinct.setdefault(text.strip(), label)
    return list(distinct), list(distinct.values()), test_t, test_y


def summary(results: dict) -> str:
    lines = ["| dataset | labels | seeds | select (mean ± std) | random (mean ± std) | select − random |", "|---|---|---|---|---|---|"]
    for dataset, seeds in results.items():
        for size in range(ROUND, LAST + 1, ROUND):
            pairs = [(row["select"][str(size)], row["random"][str(size)]) for row in seeds.values()
                     if str(size) in row.get("select", {}) and str(size) in row.get("random", {})]
            if not pairs:
                continue
            chosen, drawn = np.array(pairs).T
            lines.append(f"| {dataset} | {size} | {len(pairs)} | {chosen.mean():.3f} ± {chosen.std():.3f} | "
                         f"{drawn.mean():.3f} ± {drawn.std():.3f} | {chosen.mean() - drawn.mean():+.3f} |")
    return "\n".join(lines)


def picture(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for axis, (dataset, seeds) in zip(axes[0], results.items()):
        for arm, colour in (("select", "#d62728"), ("random", "#7f7f7f")):
            sizes = list(range(ROUND, LAST + 1, ROUND))
            values = np.array([[row[arm][str(s)] for s in sizes] for row in seeds.values() if arm in row and len(row[arm]) == len(sizes)])
            if not len(values):
                continue
            mean, std = values.mean(0), values.std(0)
            axis.plot(sizes, mean, marker="o", color=colour, label=f"{'thawkit select' if arm == 'select' else 'random'} ({len(values)} seed{'s' * (len(values) > 1)})")
            axis.fill_between(sizes, mean - std, mean + std, color=colour, alpha=0.15)
        axis.set_title({"sst2": "SST-2 (GLUE dev)", "fpb": "Financial PhraseBank (AllAgree)"}.get(dataset, dataset))
        axis.set_xlabel("labeled examples")
        axis.set_ylabel("test accuracy (fewshot)")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right")
    figure.tight_layout()
    PICTURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PICTURE, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sst2,fpb")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.summary:
        print(summary(results))
        picture(results)
        return
    for dataset in args.datasets.split(","):
        texts, labels, test_t, test_y = pool_of(dataset)
        for seed in args.seeds.split(","):
            row = results.setdefault(dataset, {}).setdefault(seed, {})
            for arm, run_arm in (("select", select_arm), ("random", random_arm)):
                if len(row.get(arm, {})) == LAST // ROUND:
                    continue
                with tempfile.TemporaryDirectory(prefix="thawkit-select-bench-") as tmp:
                    test = Path(tmp) / "test.csv"
                    write_csv(test, test_t, test_y)
                    row[arm] = {str(k): v for k, v in run_arm(texts, labels, test, Path(tmp), int(seed)).items()}
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))
    picture(results)


if __name__ == "__main__":
    main()
