"""Two CPU processes (gloo) through torchrun and accelerate launch write a normal run directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import thawkit

pytestmark = pytest.mark.distributed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_process_cpu_ddp(tiny_bert, toy_csv, tmp_path, launcher):
    out = tmp_path / "run"
    bindir = Path(sys.executable).parent
    port = str(_free_port())
    if launcher == "torchrun":
        prefix = [str(bindir / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", port]
    else:
        prefix = [
            str(bindir / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", port,
        ]
    command = [
        *prefix, "-m", "thawkit.cli.app", "train", "--data", str(toy_csv), "--model", str(tiny_bert),
        "--strategy", "gradual", "--epochs", "3", "--lr", "1e-3", "--max-length", "32", "--batch-size", "8",
        "--out", str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((out / "thawkit.json").read_text())
    assert info["world_size"] == 2
    # 108 training rows, batch 8 per process on 2 processes: 7 steps per epoch, not 14.
    assert info["global_steps"] == 21
    # gradual spreads its 4 stages (2 layers) over the run: everything trains from half-way on.
    assert [s["stage"] for s in info["stages"]] == [0, 1, 2, 3]
    assert info["stages"][-1]["step"] <= 21 / 2 + 1
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "type" not in r] == [1.0, 2.0, 3.0]
    run = thawkit.load(out)
    assert run.predict(["a great film"])[0]["label"] in {"negative", "positive"}
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
