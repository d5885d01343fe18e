"""What the CLI-driven benchmarks share: an SST-2 sample in a temporary folder, the `thawkit`
command with the data flags, and writing the results (then removing the folder)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cache_vs_trainer import prepare_data

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
THAWKIT = str(Path(sys.executable).parent / "thawkit")


@dataclass
class Sst2Work:
    """A temporary folder with N training and M validation SST-2 sentences."""

    prefix: str
    train_size: int
    val_size: int = 872
    folder: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"thawkit-{self.prefix}-bench-"))
        self.train, self.validation = prepare_data(self.folder / "data", self.train_size, self.val_size, seed=0)

    def data_flags(self, *extra: str) -> list[str]:
        return ["--data", str(self.train), "--validation", str(self.validation), "--text-col", "sentence",
                "--label-col", "label", "--progress", "off", "--no-measure-forgetting", *extra]

    def finish(self, results: dict, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(json.dumps(results, indent=2, default=str))
        shutil.rmtree(self.folder, ignore_errors=True)


def run_compare(command: list[str], out: Path, what: str = "compare") -> tuple[dict, float, str]:
    """Run a `thawkit compare` command line writing to ``out``: (its results.json, wall seconds, stdout)."""
    started = time.perf_counter()
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}")
    return json.loads((out / "results.json").read_text()), seconds, proc.stdout
