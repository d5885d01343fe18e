"""The prepared GPU check: one script to run when a task is lent a GPU (never in CI).

It runs the existing benchmarks at GPU-sized settings, each in its own process with a time limit,
so the whole check fits in about 8 minutes of device time, and writes what each measured into one
JSON plus a markdown table for docs/benchmarks.md:

1. full fine-tuning and LoRA of MiniLM-L6 against the plain Trainer, SST-2 5k (bf16 autocast on the
   GPU; `benchmarks/full_vs_trainer.py`);
2. cached partial and gradual against the plain Trainer with `requires_grad` freezing, SST-2 5k
   (`benchmarks/cache_vs_trainer.py`);
3. smollm2-135m LoRA against TRL's SFTTrainer on E2E NLG (`benchmarks/generation_e2e.py`);
4. the serving load test, PyTorch backend (`benchmarks/serve_load.py`, a short soak).

    python benchmarks/gpu_check.py --dry-run          # the steps, their commands and limits; runs nothing
    python benchmarks/gpu_check.py                    # on the device: bash-free, one command
    python benchmarks/gpu_check.py --only 1,3         # some of the steps

A step that fails or runs past its limit is recorded as such and the next one runs: the JSON always
says what was measured and what was not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    args: tuple[str, ...]
    limit_seconds: int  # the step's share of the ~8-minute device budget
    result: str  # the JSON the step writes (under benchmarks/results/)


STEPS = (
    Step("full and LoRA vs the plain Trainer (SST-2 5k, MiniLM-L6)", "full_vs_trainer.py",
         ("--datasets", "sst2", "--strategies", "full,lora", "--sst2-train", "5000", "--epochs", "2"), 150, "gpu_full_vs_trainer.json"),
    Step("cached partial and gradual vs requires_grad freezing (SST-2 5k)", "cache_vs_trainer.py",
         ("--strategies", "partial,gradual", "--train-size", "5000", "--val-size", "1000", "--epochs", "3"), 120,
         "gpu_cache_vs_trainer.json"),
    Step("smollm2-135m LoRA vs TRL SFTTrainer (E2E NLG)", "generation_e2e.py",
         ("--sides", "lora,trl-lora", "--train-mrs", "200", "--test-mrs", "100", "--epochs", "1"), 150, "gpu_generation_e2e.json"),
    Step("serving load test, PyTorch backend", "serve_load.py",
         ("--train-size", "2000", "--requests", "500", "--soak", "2000", "--skip-lora"), 60, "gpu_serve_load.json"),
)


def command(step: Step) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / step.script), *step.args, "--out", str(RESULTS / step.result)]


def device() -> dict:
    """What the machine has, as the report states it."""
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False}
    props = torch.cuda.get_device_properties(0)
    return {"cuda": True, "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
            "bf16": bool(torch.cuda.is_bf16_supported()), "torch": torch.__version__}


def run(steps: list[Step], out: Path) -> dict:
    report = {"device": device(), "steps": []}
    for step in steps:
        started = time.perf_counter()
        try:
            proc = subprocess.run(command(step), capture_output=True, text=True, timeout=step.limit_seconds, cwd=ROOT)
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}"
        except subprocess.TimeoutExpired:
            status = f"stopped at its {step.limit_seconds} s limit"
        result = RESULTS / step.result
        report["steps"].append({"name": step.name, "status": status, "seconds": round(time.perf_counter() - started, 1),
                                "result": json.loads(result.read_text()) if status == "ok" and result.exists() else None})
        print(f"{step.name}: {status}", flush=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def markdown(report: dict) -> str:
    lines = [f"GPU: {report['device']}", "", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} |" for s in report["steps"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the steps, commands and limits; run nothing")
    parser.add_argument("--only", default="", help="step numbers, e.g. 1,3 (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    args = parser.parse_args()
    chosen = [STEPS[int(i) - 1] for i in args.only.split(",") if i] if args.only else list(STEPS)
    missing = [s.script for s in chosen if not (ROOT / "benchmarks" / s.script).exists()]
    if missing:
        raise SystemExit(f"gpu_check: missing benchmark scripts {missing}")
    total = sum(s.limit_seconds for s in chosen)
    if args.dry_run:
        for number, step in enumerate(chosen, 1):
            print(f"{number}. {step.name} (limit {step.limit_seconds} s)\n   {' '.join(command(step))}")
        print(f"total limit {total} s; writes {args.out} and prints a markdown table")
        return
    print(markdown(run(chosen, args.out)))


if __name__ == "__main__":
    main()
