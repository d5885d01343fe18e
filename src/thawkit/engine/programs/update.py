"""``thawkit update RUN --data new.csv``: continue a finished run on new labelled data.

The update is a normal run (predict, serve, export, push) that starts from the old run's weights
(``thawkit.engine.core.warm_start``) with the old run's task, model, strategy and every setting its
user chose; the planner resolves the rest for the new data. New classes are allowed (the output
layer grows; the old classes keep their ids). A seeded sample of the old training examples is
replayed beside the new ones (``--replay N``), the oldest remedy against forgetting.

It is judged on two validation sets, before and after: the old run's own validation examples
(rebuilt from its files and seeded split) and the new data's. The drop on the old ones is the
forgetting meter; an update that forgets more than ``--tolerance`` is refused: its folder is kept
aside as ``OUT-rejected`` and nothing appears at ``OUT``, unless ``--accept-forgetting`` says to
keep it. ``update.json`` in the run holds the table.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from thawkit.engine.core.pipeline import run_training
from thawkit.engine.core.warm_start import WarmStart
from thawkit.errors import ConfigError
from thawkit.guards.base import GuardError
from thawkit.rundir import record_written, write_json
from thawkit.runplan import USER_SOURCES, RunPlan
from thawkit.tasks import RunBase, Task, load_checked, open_run
from thawkit.tasks.roles import UpdateData

UPDATE_FILE = "update.json"
DEFAULT_TOLERANCE = 0.01

# Settings of the old run that describe its data or its output, not the user's choice of training.
_NOT_CARRIED = {"data", "validation", "test", "out", "overwrite", "resume", "dapt_text", "label_names", "ray_workers", "ray_address",
                "ray_cpus", "ray_gpus", "distill_alpha", "distill_temperature", "distill_hidden_weight"}
_FROM_RUN = ("task", "strategy", "model", "tokenizer")


def carried_settings(info: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The old run's task, model and strategy, and every other setting its user chose."""
    config = info["config"]
    values: dict[str, Any] = {name: config[name] for name in _FROM_RUN if config.get(name) is not None}
    sources = {name: f"the run being updated ({path})" for name in values}
    options: dict[str, Any] = {}
    for name, entry in ((info.get("plan") or {}).get("settings") or {}).items():
        if not str(entry.get("source", "")).startswith(USER_SOURCES):
            continue
        if name.startswith("strategy_options."):
            options[name.removeprefix("strategy_options.")] = entry["value"]
        elif name not in _NOT_CARRIED and name not in values:
            values[name] = entry["value"]
            sources[name] = f"the run being updated ({path}: {entry['source']})"
    if options:
        values["strategy_options"], sources["strategy_options"] = options, f"the run being updated ({path})"
    return values, sources


def _rejected_folder(out: Path) -> Path:
    candidate, count = out.with_name(f"{out.name}-rejected"), 2
    while candidate.exists():
        candidate, count = out.with_name(f"{out.name}-rejected-{count}"), count + 1
    return candidate


def _change(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any]:
    return {"before": dict(before), "after": dict(after), "change": {k: after[k] - before[k] for k in after if k in before}}


@dataclass
class PreparedUpdate:
    """What an update knows before it is planned: the settings to plan, the merged data, the scores
    before, and the weights it starts from."""

    task: Task
    folder: Path
    values: dict[str, Any]
    sources: dict[str, str]
    update: UpdateData
    before: dict[str, dict[str, float]]
    warm_start: WarmStart
    seed: int


def prepare_update(path: Path, given: dict[str, Any], sources: Mapping[str, str], replay: int | None = None,
                   tolerance: float = DEFAULT_TOLERANCE, old_data: str | None = None) -> PreparedUpdate:
    """Read the run, merge the new data with its replayed examples, score the run before, and take
    its weights; the caller plans ``values`` (the run's settings with the given ones on top)."""
    from thawkit.config import make_config

    if replay is not None and replay < 0:
        raise ConfigError(f"--replay {replay}: a number of old examples; fix: 0 (none) or more")
    if not 0 <= tolerance <= 1:
        raise ConfigError(f"--tolerance {tolerance:g}: a drop of the selection metric (0 to 1); fix: e.g. --tolerance 0.01")
    task, folder, info, labels = open_run(path)
    if info.get("dapt"):
        raise ConfigError(f"{folder}: the run was adapted to its domain first (--dapt-text), which an update cannot repeat; "
                          "fix: train a new run on all the data with --model pointing at its adapted encoder")
    run = load_checked(task, folder, info, labels)
    if not hasattr(run.model, "state_dict"):
        raise ConfigError(f"{folder}: an exported (ONNX) run cannot be trained further; fix: update the PyTorch run it was "
                          "exported from")
    carried, origin = carried_settings(info, folder)
    values = {**carried, **given}
    if "strategy_options" in carried and "strategy_options" in given:  # the command line's on top of the run's
        values["strategy_options"] = {**carried["strategy_options"], **given["strategy_options"]}
    origin = {**origin, **{name: sources.get(name, "argument") for name in given}}
    seed = int(values.get("seed", info["config"].get("seed", 42)))
    update = task.update_data(info, labels, make_config({**values, "out": None}), replay, seed, old_data)
    before = {"old": task.update_scores(run, update.old_validation, update.data.labels),
              "new": task.update_scores(run, update.new_validation, update.data.labels)}
    warm = WarmStart.from_model(str(folder), task.old_model_for_update(run))
    if "out" not in values:
        values["out"] = str(folder.with_name(f"{folder.name}-update-{time.strftime('%Y%m%d-%H%M%S')}"))
        origin["out"] = "thawkit update's default: beside the run, <RUN>-update-<time>"
    return PreparedUpdate(task, folder, values, origin, update, before, warm, seed)


def run_update(plan: RunPlan, prepared: PreparedUpdate, tolerance: float = DEFAULT_TOLERANCE,
               accept_forgetting: bool = False) -> tuple[RunBase, dict[str, Any]]:
    """Train the planned update and judge it; returns the updated run and update.json's facts."""
    task, update = prepared.task, prepared.update
    all_labels = update.data.labels
    facts = {"from": str(prepared.folder), "replay_seed": prepared.seed, **update.facts, "pool": update.pool}
    updated = run_training(plan, {"update": facts}, warm_start=prepared.warm_start)

    metric = updated.info["metric"]
    before_old, before_new = prepared.before["old"], prepared.before["new"]
    after_old = task.update_scores(updated, update.old_validation, all_labels)
    after_new = task.update_scores(updated, update.new_validation, all_labels)
    forgetting = before_old[metric] - after_old[metric]
    kept = forgetting <= tolerance or accept_forgetting
    report = {
        **facts, "metric": metric, "tolerance": tolerance,
        "old_validation": {"examples": len(update.old_validation), **_change(before_old, after_old)},
        "new_validation": {"examples": len(update.new_validation), **_change(before_new, after_new)},
        "forgetting": forgetting,
        "verdict": "kept" if forgetting <= tolerance else ("kept: --accept-forgetting" if kept else "rejected"),
    }
    out = Path(updated.path)
    write_json(out / UPDATE_FILE, report)
    record_written(out, UPDATE_FILE)
    if not kept:
        aside = _rejected_folder(out)
        shutil.move(str(out), str(aside))
        raise GuardError(f"{out}: the update loses {forgetting:.3f} {metric} on the run's validation examples "
                         f"({before_old[metric]:.3f} -> {after_old[metric]:.3f}), more than --tolerance {tolerance:g}; it is kept "
                         f"aside at {aside}; fix: replay more old examples (--replay N), or pass --accept-forgetting to keep it")
    return updated, report


__all__ = ["DEFAULT_TOLERANCE", "UPDATE_FILE", "PreparedUpdate", "carried_settings", "prepare_update", "run_update"]
