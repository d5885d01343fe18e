"""The Python API: ``thawkit.train(...)`` and ``thawkit.load(path)``; the CLI calls the same functions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from thawkit.config import TrainConfig, make_config
from thawkit.errors import ConfigError
from thawkit.rundir import read_run_files
from thawkit.tasks import RunBase, task_for_run

log = logging.getLogger("thawkit")


def _merged(config: TrainConfig | dict[str, Any] | None, options: dict[str, Any]) -> dict[str, Any]:
    """A config (object or dict) with keyword options on top; None options mean "not given"."""
    values = config.model_dump(exclude_unset=True) if isinstance(config, TrainConfig) else dict(config or {})
    values.update({k: v for k, v in options.items() if v is not None})
    return values


def train(config: TrainConfig | dict[str, Any] | None = None, **options: Any) -> RunBase:
    """Train with a strategy on any task and write a run directory.

    Pass a ``TrainConfig``, a dict, or keyword options (the CLI flags' names with underscores);
    keyword options override the config. Returns the trained run (``predict``, ``metrics``, ...).
    """
    from thawkit.engine.pipeline import run_training

    values = _merged(config, options)
    if values.get("resume") is not None:
        values = _resumed_values(values)
    cfg = make_config(values)
    advice = None
    dapt_facts = None
    if cfg.dapt_text is not None:  # domain-adaptive pretraining first, then fine-tune the adapted encoder
        cfg, dapt_facts = _adapt_first(cfg)
    if cfg.strategy == "auto":
        cfg, advice = _resolve_auto(cfg)
    facts = {"advice": advice.as_dict() if advice is not None else None, "dapt": dapt_facts}
    if cfg.ray_workers is not None:  # the same pipeline on Ray Train workers (docs/scaling.md)
        from thawkit.engine.ray_cluster import train_on_ray

        return load(train_on_ray(cfg, facts))
    return run_training(cfg, facts)


# What may differ when a run is resumed: how it is shown, not what it computes.
_RESUME_MAY_CHANGE = {"resume", "progress", "overwrite"}


def _resumed_values(values: dict[str, Any]) -> dict[str, Any]:
    """--resume continues the run with the config it started with."""
    import json

    from thawkit.engine.resume import find_resume_point, saved_config

    _final, partial, _checkpoint = find_resume_point(Path(values["resume"]))
    saved = saved_config(partial)
    for key, value in values.items():
        if key not in _RESUME_MAY_CHANGE and json.dumps(value, default=str) != json.dumps(saved.get(key), default=str):
            raise ConfigError(f"--resume continues the run as it was started ({key} = {saved.get(key)!r}); "
                              f"fix: drop --{key.replace('_', '-')}, or train a new run")
    return {**saved, **{k: v for k, v in values.items() if k in _RESUME_MAY_CHANGE}}


def dapt(text: str | Path, model: str | None = None, out: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Continued masked-LM pretraining on unlabeled text; returns its facts and metrics (before/after)."""
    import time

    from thawkit.engine.dapt import DaptSettings, run_dapt
    from thawkit.logging_setup import quiet_libraries
    from thawkit.models.backbone import DEFAULT_MODEL

    quiet_libraries()
    destination = Path(out) if out is not None else Path("runs") / f"dapt-{time.strftime('%Y%m%d-%H%M%S')}"
    return run_dapt(DaptSettings(text=Path(text), model=model or DEFAULT_MODEL, out=destination, **options))


def _adapt_first(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    from thawkit.rundir import default_run_dir

    target = Path(cfg.out) if cfg.out is not None else default_run_dir(f"{cfg.task}-{cfg.strategy}")
    adapted = target.parent / f"{target.name}-dapt"
    facts = dapt(cfg.dapt_text, model=cfg.model, out=adapted, max_length=cfg.max_length or 128, seed=cfg.seed,
                 text_col=cfg.text_col, overwrite=cfg.overwrite)
    log.info("DAPT: %s -> %s (held-out MLM loss %.3f -> %.3f)", cfg.model, adapted,
             facts["metrics"]["before"]["domain_held_out"]["mlm_loss"], facts["metrics"]["after"]["domain_held_out"]["mlm_loss"])
    return cfg.model_copy(update={"model": str(adapted), "out": target, "dapt_text": None}), facts


def distill(teacher: str | Path, student: str = "layers:3", config: TrainConfig | dict[str, Any] | None = None,
            unlabeled: str | Path | None = None, **options: Any) -> tuple[RunBase, dict[str, Any]]:
    """Train a smaller student on the teacher's soft targets (classification, NER, similarity);
    ``unlabeled``: text the teacher labels to extend the training split. Returns the student run
    and the distillation facts (size, measured speed-up, share of the teacher's metric kept)."""
    from thawkit.engine.distill import run_distill
    from thawkit.logging_setup import quiet_libraries
    from thawkit.rundir import read_run_files
    from thawkit.tasks import task_for_run

    values = _merged(config, options)
    values.setdefault("strategy", "full")
    if "task" not in values:  # the teacher's task
        values["task"] = task_for_run(read_run_files(Path(teacher))[1].get("task", "")).name
    cfg = make_config(values)
    if cfg.strategy == "auto":
        raise ConfigError("distill trains the student with a named strategy; fix: --strategy full (the default)")
    quiet_libraries()
    return run_distill(cfg, Path(teacher), student, Path(unlabeled) if unlabeled is not None else None)


def lr_find(config: TrainConfig | dict[str, Any] | None = None, steps: int = 100, start_lr: float = 1e-7,
            end_lr: float | None = None, **options: Any) -> Any:
    """LR range test for a strategy on your data (a diagnostic; see thawkit.engine.lr_find)."""
    from thawkit.engine.lr_find import lr_find as run_range_test
    from thawkit.logging_setup import quiet_libraries

    values = _merged(config, options)
    cfg = make_config(values)
    if cfg.strategy == "auto":
        raise ConfigError("lr-find needs a named strategy; fix: pass --strategy")
    quiet_libraries()
    return run_range_test(cfg, steps=steps, start_lr=start_lr, end_lr=end_lr)


def load(path: str | Path) -> RunBase:
    """Load a finished run directory of any task for prediction or evaluation."""
    from thawkit.logging_setup import quiet_libraries

    run, info, labels = read_run_files(path)
    task = task_for_run(info.get("task", "sequence-classification"))
    quiet_libraries()
    return task.load_run(run, info, labels)


def _resolve_auto(cfg: TrainConfig) -> tuple[TrainConfig, Any]:
    """``--strategy auto``: the advisor's strategy, and its epochs and max length unless given."""
    from thawkit.advisor import advise

    advice = advise(
        cfg.data, model=cfg.model, text_col=cfg.text_col, text_pair_col=cfg.text_pair_col, label_col=cfg.label_col,
        validation=cfg.validation, seed=cfg.seed, max_length=cfg.max_length, task=cfg.task,
    )
    update: dict[str, Any] = {"strategy": advice.strategy}
    if "epochs" not in cfg.model_fields_set:
        update["epochs"] = advice.epochs
    if cfg.max_length is None:
        update["max_length"] = advice.max_length
    log.info("strategy auto -> %s (%s)", advice.strategy, advice.reasons[-1])
    return make_config({**cfg.model_dump(exclude_unset=True), **update}), advice


__all__ = ["train", "load", "lr_find", "dapt", "distill"]
