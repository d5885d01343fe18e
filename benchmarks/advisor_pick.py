"""Does the advisor pick the strategy that wins, on data none of the defaults were tuned on?

Financial PhraseBank (`Sentences_50Agree.txt`: 4,846 financial-news sentences, positive / neutral /
negative, 4.8:1 skewed; no official split, so a seeded 80/20 stratified one is drawn here). Runs
`thawkit advise` and `thawkit compare --strategies all` with nothing else given (every strategy at
its defaults, selection on the default metric) and reports the advisor's pick against the winner,
in points of macro-F1.

    python benchmarks/advisor_pick.py [--agree 50]
    python benchmarks/advisor_pick.py --strategies lora,full   # add strategies to the recorded comparison
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from defaults_sweep import SHARED
from sst2_cli import ENV, THAWKIT


def split_phrasebank(agree: str, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    by_label: dict[str, list[str]] = defaultdict(list)
    for line in (SHARED / "financial_phrasebank" / f"Sentences_{agree}Agree.txt").read_text(encoding="utf-8").splitlines():
        if "@" in line:
            text, label = line.rsplit("@", 1)
            by_label[label.strip()].append(text.strip())
    rng = random.Random(seed)
    parts: dict[str, list[tuple[str, str]]] = {"train": [], "validation": []}
    for label, texts in sorted(by_label.items()):
        rng.shuffle(texts)
        cut = round(0.8 * len(texts))
        parts["train"] += [(t, label) for t in texts[:cut]]
        parts["validation"] += [(t, label) for t in texts[cut:]]
    paths = []
    for name, rows in parts.items():
        rng.shuffle(rows)
        path = folder / f"phrasebank-{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        paths.append(path)
    return paths[0], paths[1]


def _run(args: list[str]) -> str:
    proc = subprocess.run(args, env=ENV, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agree", default="50", choices=["50", "66", "75", "All"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "advisor_pick.json")
    parser.add_argument("--strategies", default="all",
                        help="compare only these; their rows are merged into the strategies already recorded in --out")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="thawkit-advisor-pick-"))
    try:
        train, validation = split_phrasebank(args.agree, folder)
        flags = ["--data", str(train), "--validation", str(validation)]
        advice = json.loads(_run([THAWKIT, "advise", *flags, "--json"]))
        started = time.perf_counter()
        _run([THAWKIT, "compare", *flags, "--strategies", args.strategies, "--out", str(folder / "compare"), "--no-advise",
              "--progress", "off"])
        wall = time.perf_counter() - started
        payload = json.loads((folder / "compare" / "results.json").read_text())
        metric = payload["metric"]
        rows = {r["strategy"]: {"macro_f1": round(r[f"validation_{metric}_mean"], 4), "seconds": round(r["train_seconds_mean"], 1),
                                "expected_seconds": advice["alternatives"][r["strategy"]]["expected_seconds"]}
                for r in payload["results"]}
        if args.strategies != "all" and args.out.exists():  # the same split and defaults: one comparison run in parts
            recorded = json.loads(args.out.read_text()).get("strategies", {})
            rows = {**{k: v for k, v in recorded.items() if k not in rows}, **rows}
        best = max(rows, key=lambda s: rows[s]["macro_f1"])
        result = {
            "data": f"financial_phrasebank Sentences_{args.agree}Agree, seeded 80/20 stratified split",
            "metric": metric, "strategies": rows, "winner": best, "advisor_pick": advice["strategy"], "advisor_rule": advice["rule"],
            "advisor_points_below_best": round(100 * (rows[best]["macro_f1"] - rows[advice["strategy"]]["macro_f1"]), 2),
            "domain_similarity": advice["domain"]["score"], "wall_seconds": round(wall, 1),
            "command": " ".join(["python", "benchmarks/advisor_pick.py", *sys.argv[1:]]),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
