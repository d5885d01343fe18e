"""Resumable checkpoints: everything a killed run needs to continue as if it never stopped.

The Trainer's checkpoint (weights or adapter, optimizer, scheduler, RNG states, trainer state) is
completed by thawkit's own state: the unfreezing stage reached (so the optimizer's parameter groups
are rebuilt before its state is loaded), the history, the best weights kept in memory, early
stopping and divergence-guard counters. ``thawkit_state.json`` is written last, atomically: a
checkpoint without it was interrupted while being written and is never resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from thawkit.errors import ConfigError
from thawkit.rundir import json_safe, partial_dir_for

log = logging.getLogger("thawkit")

STATE_FILE = "thawkit_state.json"
BEST_FILE = "best_snapshot.safetensors"
PLAN_FILE = "run_plan.json"  # the run's plan (thawkit.runplan.RunPlan.as_dict), written when training starts


def _step(folder: Path) -> int:
    match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
    return int(match.group(1)) if match else -1


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    """Checkpoints whose writing finished, oldest first."""
    if not checkpoints.is_dir():
        return []
    found = [f for f in checkpoints.iterdir() if _step(f) >= 0 and (f / STATE_FILE).exists()]
    return sorted(found, key=_step)


def rotate(checkpoints: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; incomplete ones (a kill mid-write) go too."""
    complete = complete_checkpoints(checkpoints)
    keep_set = set(complete[-keep:])
    for folder in checkpoints.iterdir() if checkpoints.is_dir() else []:
        if _step(folder) >= 0 and folder not in keep_set:
            shutil.rmtree(folder, ignore_errors=True)


def find_resume_point(path: Path) -> tuple[Path, Path, Path | None]:
    """(final run dir, partial dir, checkpoint) for ``--resume PATH``: the run's --out folder, its
    ``.NAME.partial`` folder, or one checkpoint folder. A run stopped before its first checkpoint
    (during the cache pass, say) has its plan but no checkpoint: None, it starts over as planned."""
    path = Path(path)
    if _step(path) >= 0 and path.parent.name == "checkpoints":
        partial = path.parent.parent
        if not (path / STATE_FILE).exists():
            raise ConfigError(f"{path}: this checkpoint was not completely written; fix: resume from the run folder "
                              "(its newest complete checkpoint is used)")
        checkpoint = path
    else:
        partial = path if path.name.startswith(".") and path.name.endswith(".partial") else partial_dir_for(path)
        complete = complete_checkpoints(partial / "checkpoints")
        if not complete:
            if path.is_dir() and (path / "thawkit.json").exists():
                raise ConfigError(f"{path}: this run finished, there is nothing to resume; fix: train a new run with another --out")
            if (partial / PLAN_FILE).exists():
                return partial.parent / partial.name[1 : -len(".partial")], partial, None
            raise ConfigError(f"{path}: no checkpoint to resume from (looked in {partial / 'checkpoints'}); fix: pass the --out "
                              "folder of an interrupted run that reached a checkpoint (--checkpoint-every), or train from the start")
        checkpoint = complete[-1]
    final = partial.parent / partial.name[1 : -len(".partial")]
    if not (partial / PLAN_FILE).exists():
        raise ConfigError(f"{partial}: no {PLAN_FILE}, so its configuration is unknown; fix: train from the start")
    return final, partial, checkpoint


def saved_plan(partial: Path) -> dict[str, Any]:
    """The plan an interrupted run started with (``write_plan``)."""
    return json.loads((partial / PLAN_FILE).read_text(encoding="utf-8"))


def write_json_atomically(path: Path, values: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.tmp"
    temporary.write_text(json.dumps(json_safe(values), indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def write_plan(partial: Path, plan: dict[str, Any]) -> None:
    write_json_atomically(partial / PLAN_FILE, plan)


class CheckpointState:
    """thawkit's part of a checkpoint: written after the Trainer's files, read before training resumes."""

    def __init__(self, controller: Any, history: Any, best: Any, divergence: Any) -> None:
        self.controller, self.history, self.best, self.divergence = controller, history, best, divergence

    def save(self, folder: Path, losses: dict[str, float] | None = None) -> None:
        from safetensors.torch import save_file

        best, snapshot = self.best.checkpoint_state()
        if snapshot is not None:
            save_file({str(i): t.detach().contiguous().cpu() for i, t in enumerate(snapshot)}, str(folder / BEST_FILE))
        state = {
            "stage": self.controller.stage,
            "stage_log": self.controller.stage_log,
            "history": self.history.records,
            "best": best,
            "divergence_losses": list(self.divergence.losses) if self.divergence is not None else [],
            "losses": losses,  # the Trainer's running loss sums (StrategyTrainer.loss_accumulators)
            "saved_at": time.time(),
        }
        temporary = folder / f".{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(json_safe(state), default=str) + "\n", encoding="utf-8")
        os.replace(temporary, folder / STATE_FILE)  # last: marks the checkpoint complete

    @staticmethod
    def read(folder: Path) -> dict[str, Any]:
        return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))

    def restore(self, folder: Path) -> None:
        """Everything except the stage (rebuilt with the optimizer, see StrategyTrainer)."""
        from safetensors.torch import load_file

        state = self.read(folder)
        self.history.records = list(state["history"])
        best = state["best"]
        tensors = load_file(str(folder / BEST_FILE)) if best["snapshot"] else None
        self.best.restore_checkpoint_state(best, [tensors[str(i)] for i in range(len(tensors))] if tensors is not None else None)
        if self.divergence is not None:
            self.divergence.losses = list(state["divergence_losses"])
        self.restored_stage_log = list(state["stage_log"])


def rebuild_stages(controller: Any, optimizer: torch.optim.Optimizer, stage: int, global_step: int) -> None:
    """Replay the stage changes up to ``stage`` so the optimizer has the parameter groups, in the
    order, that the interrupted run's optimizer had when its state was saved."""
    for s in range(1, stage + 1):
        controller.enter(s, global_step, optimizer, None)
