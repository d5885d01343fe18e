"""The Python API: ``thawkit.train(...)`` and ``thawkit.load(path)``; the CLI calls the same functions.

Every function that trains plans its run first (``thawkit.planner.plan_run``): settings are
resolved there, once, with their sources, and options a command would not honour are refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from thawkit.config import TrainConfig, make_config
from thawkit.errors import ConfigError
from thawkit.planner import given_values, plan_run
from thawkit.rundir import read_run_files
from thawkit.runplan import RunPlan
from thawkit.tasks import RunBase, load_checked, open_run, task_for_run

log = logging.getLogger("thawkit")


def plan(config: TrainConfig | dict[str, Any] | None = None, *, command: str = "train", sources: Mapping[str, str] | None = None,
         **options: Any) -> RunPlan:
    """The plan ``train`` would run (every setting with its source), without training or DAPT."""
    return plan_run(given_values(config, options), command, sources, dry_run=True)


def train(config: TrainConfig | dict[str, Any] | None = None, *, sources: Mapping[str, str] | None = None,
          **options: Any) -> RunBase:
    """Train with a strategy on any task and write a run directory.

    Pass a ``TrainConfig``, a dict, or keyword options (the CLI flags' names with underscores);
    keyword options override the config. ``sources`` says where given values came from (the CLI
    passes "command line" / "config file PATH"). Returns the trained run (``predict``, ``metrics``, ...).
    """
    from thawkit.engine.core.pipeline import run_training

    planned = plan_run(given_values(config, options), "train", sources)
    if planned.config.ray_workers is not None:  # the same pipeline on Ray Train workers (docs/scaling.md)
        from thawkit.engine.programs.ray_cluster import train_on_ray

        return load(train_on_ray(planned))
    return run_training(planned)


def dapt(text: str | Path, model: str | None = None, out: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Continued masked-LM pretraining on unlabeled text; returns its facts and metrics (before/after)."""
    import time

    from thawkit.engine.programs.dapt import DaptSettings, run_dapt
    from thawkit.logging_setup import quiet_libraries
    from thawkit.models.backbone import DEFAULT_MODEL

    quiet_libraries()
    destination = Path(out) if out is not None else Path("runs") / f"dapt-{time.strftime('%Y%m%d-%H%M%S')}"
    return run_dapt(DaptSettings(text=Path(text), model=model or DEFAULT_MODEL, out=destination, **options))


def distill(teacher: str | Path, student: str = "layers:3", config: TrainConfig | dict[str, Any] | None = None,
            unlabeled: str | Path | None = None, *, sources: Mapping[str, str] | None = None,
            **options: Any) -> tuple[RunBase, dict[str, Any]]:
    """Train a smaller student on the teacher's soft targets (classification, NER, similarity);
    ``unlabeled``: text the teacher labels to extend the training split. Returns the student run
    and the distillation facts (size, measured speed-up, share of the teacher's metric kept)."""
    import time

    from thawkit.engine.programs.distill import discard_student_base, load_teacher, prepare_student, run_distill
    from thawkit.logging_setup import quiet_libraries
    from thawkit.planner.commands import COMMANDS, refuse_unhonoured
    from thawkit.tasks import get_task

    values = given_values(config, options)
    origin = dict(sources or {})
    refuse_unhonoured(COMMANDS["distill"], values)  # before any work: the teacher is not even read
    if "model" in values:
        raise ConfigError("distill's student is --student (layers:N or a model); fix: drop --model")
    if "strategy" not in values:
        values["strategy"], origin["strategy"] = "full", "thawkit distill's default"
    if values["strategy"] == "auto":
        raise ConfigError("distill trains the student with a named strategy; fix: --strategy full (the default)")
    if "task" not in values:  # the teacher's task
        values["task"] = task_for_run(read_run_files(Path(teacher))[1].get("task", "")).name
        origin["task"] = "the teacher's task"
    quiet_libraries()
    task = get_task(values["task"])
    teacher_run = load_teacher(Path(teacher), task)
    out = Path(values.get("out") or Path("runs") / f"distill-{time.strftime('%Y%m%d-%H%M%S')}")
    picked = prepare_student(teacher_run, student, out, task)
    try:
        values.update(model=picked.model, out=str(out))
        origin.update(model=f"thawkit distill: the student ({student})", out=origin.get("out", "thawkit distill's default"))
        extra_train = task.teacher_labelled(teacher_run, Path(unlabeled), make_config(values)) if unlabeled is not None else None
        planned = plan_run(values, "distill", origin, extra_train=extra_train,
                           facts={"unlabeled": str(unlabeled)} if unlabeled is not None else None)
    except BaseException:
        discard_student_base(picked)  # a temporary: never left behind by a refused input
        raise
    return run_distill(planned, Path(teacher), teacher_run, picked)


def lr_find(config: TrainConfig | dict[str, Any] | None = None, steps: int = 100, start_lr: float = 1e-7,
            end_lr: float | None = None, *, sources: Mapping[str, str] | None = None, **options: Any) -> Any:
    """LR range test for a strategy on your data (a diagnostic; see thawkit.engine.programs.lr_find)."""
    from thawkit.engine.programs.lr_find import lr_find as run_range_test
    from thawkit.logging_setup import quiet_libraries

    values = given_values(config, options)
    if values.get("strategy") == "auto":
        raise ConfigError("lr-find needs a named strategy; fix: pass --strategy")
    if not start_lr > 0:
        raise ConfigError(f"--start-lr {start_lr:g}: the range is exponential and starts above 0; fix: e.g. --start-lr 1e-7")
    if end_lr is not None and not end_lr > start_lr:
        raise ConfigError(f"--end-lr {end_lr:g} is not above --start-lr {start_lr:g}; fix: an end above the start, e.g. "
                          f"--end-lr {start_lr * 1e6:g}")
    if steps < 2:
        raise ConfigError(f"--steps {steps}: a range test needs at least 2 steps; fix: e.g. --steps 100")
    quiet_libraries()
    return run_range_test(plan_run(values, "lr-find", sources), steps=steps, start_lr=start_lr, end_lr=end_lr)


def load(path: str | Path) -> RunBase:
    """Load a finished run directory of any task for prediction or evaluation."""
    from thawkit.logging_setup import quiet_libraries

    task, run, info, labels = open_run(path)
    quiet_libraries()
    return load_checked(task, run, info, labels)


def select(pool: str | Path, budget: int, run: str | Path | None = None, labeled: str | Path | None = None,
           model: str | None = None, text_col: str | None = None, seed: int = 42) -> Any:
    """Which ``budget`` texts of ``pool`` to label next: diversity on sentence embeddings, times a
    classification ``run``'s uncertainty when given; ``labeled``: texts labeled already (excluded, and
    the picks spread away from them). Returns a ``Selection`` (``texts`` in the order drawn)."""
    from thawkit.engine.programs.select import select_examples
    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()
    return select_examples(Path(pool), budget, Path(run) if run is not None else None,
                           Path(labeled) if labeled is not None else None, model, text_col, seed)


def prompt(data: str | Path, validation: str | Path | None = None, test: str | Path | None = None, model: str | None = None,
           shots: int = 0, instruction: str | None = None, text_col: str | None = None, label_col: str | None = None,
           label_names: list[str] | None = None, max_length: int = 128, batch_size: int = 8, seed: int = 42,
           calibration: str = "content-free") -> Any:
    """A decoder (default: the embedded smollm2-135m) prompted as a classifier, no training: each
    label's name scored by its log-likelihood after an instruction, ``shots`` demonstrations per
    class drawn from ``data`` (seeded) and the text. Scores ``validation`` and ``test`` (with neither, the 10% split of ``data`` train would hold out);
    ``calibration="content-free"`` divides out the label lean the prompt shows on empty texts.
    Returns a ``PromptReport`` (metrics per split, seconds, peak memory, predictions)."""
    from thawkit.engine.programs.prompting import prompt_classifier
    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()
    return prompt_classifier(Path(data), Path(validation) if validation is not None else None,
                             Path(test) if test is not None else None, model, shots, instruction, text_col, label_col,
                             label_names, max_length, batch_size, seed, calibration)


def push(run: str | Path, repo_id: str, private: bool = True, dry_run: bool = False, revision: str | None = None,
         message: str | None = None, token: str | None = None) -> dict[str, Any]:
    """Publish a finished run folder to the Hugging Face Hub in one commit (private by default); with
    ``dry_run``, what would be sent. Returns the files, the fixes made to the card, the warnings, and
    (sent) the repository URL and commit id."""
    from thawkit.engine.programs.hub_push import push_run

    return push_run(run, repo_id, private=private, dry_run=dry_run, revision=revision, message=message, token=token)


def drift(run: str | Path, data: str | Path, text_col: str | None = None, reference: str | Path | None = None,
          sample: int = 2000, seed: int = 42) -> dict[str, Any]:
    """Has ``data`` drifted from what ``run`` was trained on: input drift (a two-sample classifier's
    ROC AUC on sentence embeddings) and prediction drift (PSI of the predicted labels), each with its
    threshold, the run's own validation split as the no-drift reference, and a plain ``verdict``."""
    from thawkit.engine.programs.drift import measure_drift

    return measure_drift(Path(run), Path(data), text_col, Path(reference) if reference is not None else None, sample, seed).as_dict()


def update(run: str | Path, config: TrainConfig | dict[str, Any] | None = None, *, replay: int | None = None,
           tolerance: float = 0.01, accept_forgetting: bool = False, old_data: str | Path | None = None,
           sources: Mapping[str, str] | None = None, **options: Any) -> tuple[RunBase, dict[str, Any]]:
    """Continue ``run`` on new labelled data (``data=``; new classes allowed), replaying ``replay``
    old training examples (None: all of them). Returns the updated run and its update
    report (old and new validation metrics before and after, the forgetting); raises GuardError (the
    run kept aside as OUT-rejected) when it forgets more than ``tolerance`` unless ``accept_forgetting``."""
    from thawkit.engine.programs.update import prepare_update, run_update
    from thawkit.logging_setup import quiet_libraries
    from thawkit.planner.commands import COMMANDS, refuse_unhonoured

    values = given_values(config, options)
    refuse_unhonoured(COMMANDS["update"], values)
    if values.get("data") is None:
        raise ConfigError("no new data; fix: pass --data FILE (labelled examples; new classes allowed)")
    quiet_libraries()
    prepared = prepare_update(Path(run), values, dict(sources or {}), replay=replay, tolerance=tolerance,
                              old_data=str(old_data) if old_data is not None else None)
    planned = plan_run(prepared.values, "update", prepared.sources, data=prepared.update.data)
    return run_update(planned, prepared, tolerance=tolerance, accept_forgetting=accept_forgetting)


__all__ = ["train", "plan", "load", "lr_find", "dapt", "distill", "select", "push", "drift", "update", "prompt"]
