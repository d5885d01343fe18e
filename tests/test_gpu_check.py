"""The prepared GPU check (benchmarks/gpu_check.py) is ready to run when a device is lent: its dry
run lists every step within the ~8-minute budget, and every flag it passes is one its benchmark takes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_dry_run_lists_every_step_within_the_device_budget():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run"], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.count("\n   ") == len(gpu_check.STEPS) == 4
    total = int(re.search(r"total limit (\d+) s", proc.stdout).group(1))
    assert total == sum(step.limit_seconds for step in gpu_check.STEPS) <= 8 * 60


def test_every_flag_passed_is_one_the_benchmark_takes():
    for step in gpu_check.STEPS:
        source = (ROOT / "benchmarks" / step.script).read_text()
        taken = set(re.findall(r'add_argument\("(--[a-z0-9-]+)"', source))
        passed = {arg for arg in (*step.args, "--out") if arg.startswith("--")}
        assert passed <= taken, (step.script, passed - taken)
