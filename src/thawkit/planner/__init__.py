"""The one place a run is planned: ``plan_run(values, command) -> RunPlan``.

Every command that trains (``train``, each ``compare`` job — local, parallel or Ray —, ``distill``,
``lr-find``, cache warming, Ray Train through the plan it ships) starts here, and every setting is
resolved here exactly once, in this order:

1. ``--resume``: the interrupted run's saved plan, unchanged (only how it is shown may differ);
2. the command's table (``planner.commands``): options it would not honour are refused;
3. ``--strategy auto``: the advisor's strategy, and its epochs and max length where not given;
4. the task's own checks; its data, loaded once and handed to the engine;
5. the split seed, max length (the task's default, within the model's positions), the measured
   learning rate, head multiplier and strategy options (``strategies/measured_defaults.json`` by
   task, strategy and model size), the selection metric, epochs (raised for small data), precision
   and cache dtype (from the hardware), the frozen-layer cache, the output folder;
6. ``--dapt-text``: domain-adaptive pretraining, whose output becomes the model.

Each value's source is recorded (``RunPlan.sources``); ``thawkit train --dry-run`` prints them and
``thawkit.json`` keeps them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

from thawkit.config import TrainConfig, make_config
from thawkit.errors import ConfigError
from thawkit.planner.commands import COMMANDS, command_for, refuse_unhonoured
from thawkit.planner.resolve import Resolution, resolve_settings
from thawkit.runplan import RunPlan

log = logging.getLogger("thawkit")

ARGUMENT = "argument"  # a keyword of the Python API

# What may differ when a run is resumed: how it is shown, not what it computes.
_RESUME_MAY_CHANGE = ("resume", "progress", "overwrite")


def given_values(config: TrainConfig | Mapping[str, Any] | None, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A config (object or dict) with keyword options on top; None means "not given"."""
    values = config.model_dump(exclude_unset=True) if isinstance(config, TrainConfig) else dict(config or {})
    values.update({k: v for k, v in (options or {}).items() if v is not None})
    return {k: v for k, v in values.items() if v is not None}


def plan_run(values: Mapping[str, Any], command: str = "train", sources: Mapping[str, str] | None = None, *,
             dry_run: bool = False, extra_train: Any = None, facts: Mapping[str, Any] | None = None,
             data: Any = None) -> RunPlan:
    """Resolve every setting of one run of ``command`` from the given ``values`` (None: not given).

    ``sources``: where each given value came from (the CLI passes "command line" / "config file
    PATH"; keys it does not name are API arguments). ``extra_train``: examples added to the training
    split (a teacher's labels). ``data``: the task's data, loaded by the caller (``thawkit update``
    merges new and replayed examples; a worker could not rebuild it from the config, so that
    command trains in this process). ``facts``: what the caller already did (a shared DAPT) for thawkit.json.
    ``dry_run``: plan without running DAPT.
    """
    spec = command_for(command)
    given = {k: v for k, v in values.items() if v is not None}
    origin = {k: (sources or {}).get(k, ARGUMENT) for k in given}
    if given.get("resume") is not None:
        refuse_unhonoured(spec, given)
        return _resumed(given, origin)
    refuse_unhonoured(spec, given, origin)
    for name, (value, why) in spec.sets.items():
        if name not in given:
            given[name], origin[name] = value, f"thawkit {command}: {why}"
    cfg: TrainConfig = make_config(given)
    found = dict(facts or {})
    if cfg.strategy == "auto":
        given, origin, found["advice"] = _resolve_auto(cfg, given, origin)
        cfg = make_config(given)
    elif "advice" not in found:
        found["advice"] = None
    resolution = Resolution(given, origin)
    plan = resolve_settings(cfg, resolution, spec, extra_train, data)
    found.setdefault("dapt", None)
    if cfg.dapt_text is not None:
        plan = _adapt_first(plan, found, dry_run)
    return RunPlan(plan.command, plan.config, plan.sources, plan.measured, found, plan.cache_reason, plan.loaded)


def check_task_and_strategy(values: Mapping[str, Any]) -> None:
    """The task's refusals of a strategy and its settings (step 4's checks), without loading data or
    model: what ``compare`` asks of every candidate before its first job trains."""
    from thawkit.planner.resolve import check_task_config

    check_task_config(make_config(dict(values)))


def _resumed(given: dict[str, Any], origin: dict[str, str]) -> RunPlan:
    """--resume continues the run with the plan it started with."""
    from thawkit.engine.core.resume import find_resume_point, saved_plan

    final, partial, _checkpoint = find_resume_point(Path(given["resume"]))
    saved = saved_plan(partial)
    config = saved["config"]
    for key, value in given.items():
        if key not in _RESUME_MAY_CHANGE and json.dumps(value, default=str) != json.dumps(config.get(key), default=str):
            raise ConfigError(f"--resume continues the run as it was started ({key} = {config.get(key)!r}); "
                              f"fix: drop --{key.replace('_', '-')}, or train a new run")
    plan = RunPlan.from_dict(saved)
    changed = {k: given[k] for k in _RESUME_MAY_CHANGE if k in given}
    updated = plan.with_updates("resumed", **changed)
    return RunPlan(updated.command, updated.config, {**updated.sources, **{k: origin[k] for k in changed}},
                   updated.measured, updated.facts, updated.cache_reason)


def _resolve_auto(cfg: TrainConfig, given: dict[str, Any], origin: dict[str, str]) -> tuple[dict[str, Any], dict[str, str], Any]:
    """``--strategy auto``: the advisor's strategy, and its epochs and max length unless given."""
    from thawkit.advisor import advise

    advice = advise(cfg.data, model=cfg.model, text_col=cfg.text_col, text_pair_col=cfg.text_pair_col, label_col=cfg.label_col,
                    validation=cfg.validation, seed=cfg.seed, max_length=cfg.max_length, task=cfg.task)
    why = f"advisor (rule {advice.rule})"
    given, origin = {**given, "strategy": advice.strategy}, {**origin, "strategy": why}
    for name, value in (("epochs", advice.epochs), ("max_length", advice.max_length)):
        if name not in given:
            given[name], origin[name] = value, why
    log.info("strategy auto -> %s (%s)", advice.strategy, advice.reasons[-1])
    return given, origin, advice.as_dict()


def dapt_folder(out: Path) -> Path:
    """Where ``--dapt-text`` writes the adapted encoder: beside the run, OUT-dapt."""
    return out.parent / f"{out.name}-dapt"


def adapt_backbone(cfg: TrainConfig, text: Path, target: Path, reuse: bool = False) -> tuple[str, dict[str, Any]]:
    """Domain-adaptive pretraining of ``cfg.model`` on ``text`` into ``target`` (``cfg`` is planned:
    its max length resolved); returns the adapted model's folder and the DAPT facts.
    ``reuse``: a finished adaptation already in ``target`` is taken as it is (a resumed comparison)."""
    from thawkit.engine.programs.dapt import DAPT_FILE, DaptSettings, run_dapt
    from thawkit.logging_setup import quiet_libraries

    if reuse and (target / DAPT_FILE).exists():
        return str(target), {**json.loads((target / DAPT_FILE).read_text(encoding="utf-8")), "path": str(target), "reused": True}
    quiet_libraries()
    facts = run_dapt(DaptSettings(text=Path(text), model=cfg.model, out=target, max_length=int(cfg.max_length or 0),
                                  seed=cfg.seed, text_col=cfg.text_col, overwrite=cfg.overwrite))
    log.info("DAPT: %s -> %s (held-out MLM loss %.3f -> %.3f)", cfg.model, target,
             facts["metrics"]["before"]["domain_held_out"]["mlm_loss"], facts["metrics"]["after"]["domain_held_out"]["mlm_loss"])
    return str(target), facts


def _adapt_first(plan: RunPlan, found: dict[str, Any], dry_run: bool) -> RunPlan:
    cfg = plan.config
    target = dapt_folder(Path(cfg.out)) if cfg.out is not None else Path(str(cfg.model) + "-dapt")
    why = f"DAPT of {cfg.model} on {cfg.dapt_text} (continued masked-LM pretraining), written to {target}"
    if dry_run:
        found["dapt"] = {"planned": str(target), "text": str(cfg.dapt_text)}
        return plan.with_updates(why + " [dry run: not run]", model=str(target))
    model, found["dapt"] = adapt_backbone(plan.config, Path(str(cfg.dapt_text)), target)
    # dapt_text done: what the config now says ran is fine-tuning of the adapted model (its source names the text).
    updates = {"model": model, "dapt_text": None, **({} if plan.given("tokenizer") else {"tokenizer": model})}
    return plan.with_updates(why, **updates)


__all__ = ["COMMANDS", "adapt_backbone", "dapt_folder", "given_values", "plan_run"]
