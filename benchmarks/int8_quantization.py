"""int8 ONNX exports against fp32: the validation metric change, whether a text's scores depend on
the batch it is in, and per-text time alone and in batches, for `--quantize int8` (static,
calibrated) and `--quantize int8-dynamic` (each text run alone).

MiniLM-L6 fine-tuned (full, 1 epoch, max length 64) on the first 2,000 SST-2 training sentences,
validated on the shared SST-2 validation file; 40 general-English sentences timed (one run).

    python benchmarks/int8_quantization.py --out benchmarks/results/int8_quantization.json
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
SST2 = ROOT.parent / "shared" / "datasets" / "sst2"
THAWKIT = str(Path(sys.executable).with_name("thawkit"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def cli(*args: str) -> None:
    subprocess.run([THAWKIT, *args], env=ENV, check=True, capture_output=True, text=True)


def measure(folder: Path, texts: list[str]) -> dict:
    import thawkit

    run = thawkit.load(folder)
    alone = np.concatenate([run.logits([text]) for text in texts])
    started = time.perf_counter()
    for text in texts:
        run.logits([text])
    one = (time.perf_counter() - started) / len(texts) * 1000
    started = time.perf_counter()
    for _ in range(5):
        together = run.logits(texts)
    batched = (time.perf_counter() - started) / 5 / len(texts) * 1000
    facts = json.loads((folder / "export.json").read_text())["quantization"] or {}
    return {"metric": facts.get("metric"), "fp32": facts.get("fp32"), "int8": facts.get("int8"),
            "metric_change_points": facts.get("metric_change_points"), "kind": facts.get("kind"),
            "batch_dependence_max_abs": float(np.abs(alone - together).max()),
            "ms_per_text_alone": round(one, 2), "ms_per_text_batch_40": round(batched, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_quantization.json")
    args = parser.parse_args()
    from thawkit.data.probe import general_sentences

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        lines = (SST2 / "train.tsv").read_text(encoding="utf-8").splitlines()[:2001]
        (root / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        cli("train", "--data", str(root / "train.tsv"), "--validation", str(SST2 / "validation.tsv"), "--strategy", "full",
            "--epochs", "1", "--max-length", "64", "--progress", "off", "--no-measure-forgetting", "--out", str(root / "run"))
        texts = general_sentences()[:40]
        results = {}
        for name, extra in (("fp32", []), ("int8", ["--quantize", "int8"]), ("int8-dynamic", ["--quantize", "int8-dynamic"])):
            cli("export", str(root / "run"), "--onnx", *extra, "--out", str(root / name))
            results[name] = measure(root / name, texts)
            print(name, results[name], flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
