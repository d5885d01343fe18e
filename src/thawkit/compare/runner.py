"""Train several strategies on identical splits and seeds, within a shared budget, and report."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from thawkit.compare.jobs import train_job
from thawkit.config import CompareConfig, TrainConfig, make_config
from thawkit.errors import ConfigError
from thawkit.planner.commands import COMMANDS, refuse_unhonoured

log = logging.getLogger("thawkit")


@dataclass
class Comparison:
    path: Path
    rows: list[dict[str, Any]]
    winner: dict[str, Any]
    advice: dict[str, Any] | None
    metric: str
    models_advice: dict[str, Any] | None = None

    def table(self) -> list[dict[str, Any]]:
        return self.rows


COMPARE_CONFIG = "compare_config.json"  # the comparison's config, kept until it is published (for --resume)


def _has_checkpoint(run_out: Path) -> bool:
    from thawkit.engine.core.resume import complete_checkpoints
    from thawkit.rundir import partial_dir_for

    return bool(complete_checkpoints(partial_dir_for(run_out) / "checkpoints"))


def _resumed_comparison(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    import json

    from thawkit.rundir import partial_dir_for

    saved_file = partial_dir_for(path) / COMPARE_CONFIG
    if not saved_file.exists():
        raise ConfigError(f"{path}: no interrupted comparison to resume (no {saved_file}); fix: pass the --out folder of an "
                          "interrupted 'thawkit compare'")
    saved = json.loads(saved_file.read_text(encoding="utf-8"))
    return {**saved, **{k: v for k, v in values.items() if k in ("resume", "progress")}}


def _run_jobs(jobs: list[dict[str, Any]], cfg: CompareConfig) -> list[str]:
    finished = {i: job["finished"] for i, job in enumerate(jobs) if "finished" in job}
    todo = [job for job in jobs if "finished" not in job]
    done = iter(_run_pending(todo, cfg))
    return [finished[i] if i in finished else next(done) for i in range(len(jobs))]


def _run_pending(jobs: list[dict[str, Any]], cfg: CompareConfig) -> list[str]:
    if not jobs:
        return []
    if cfg.on_ray():
        from thawkit.compare.ray_jobs import run_tasks

        return run_tasks(jobs, cfg)
    if cfg.workers <= 1 or len(jobs) <= 1:
        return [train_job(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(train_job, jobs, [threads] * len(jobs)))


def _strategies(cfg: CompareConfig) -> list[str]:
    from thawkit.strategies import get_strategy_class, strategies_in_display_order

    names = strategies_in_display_order() if cfg.strategies in (["all"], []) else cfg.strategies
    # Each strategy's own ``order`` puts the widest cache passes first, so later runs reuse them.
    return sorted(dict.fromkeys(names), key=lambda n: (get_strategy_class(n).order, n))


def compare(config: CompareConfig | dict[str, Any] | None = None, *, sources: Mapping[str, str] | None = None,
            **options: Any) -> Comparison:
    """Train every strategy × seed on identical splits; write results.csv/json and the report.
    ``sources``: where given values came from (the CLI's "command line" / "config file PATH")."""
    from thawkit.rundir import exclusive

    given = {**(config.model_dump(exclude_unset=True) if isinstance(config, CompareConfig) else dict(config or {})), **options}
    target = given.get("out") or given.get("resume")
    if target is None:
        return _compare(config, sources, **options)
    with exclusive(Path(target)):
        return _compare(config, sources, **options)


def _metric_of(summaries: list[dict[str, Any]]) -> str:
    """The task's selection metric, from the first job that finished; none finished: the first failure."""
    from thawkit.guards.base import GuardError

    found = next((s["info"]["metric"] for s in summaries if s["info"].get("metric")), None)
    if found is None:
        raise GuardError("every job of the comparison failed; the first: " + str(summaries[0]["info"].get("failed")))
    return found


def _given_models(cfg: CompareConfig) -> list[str | None]:
    """The models of the comparison's jobs; [None]: the one model each job's plan resolves (not given)."""
    if cfg.models:
        return list(cfg.models)
    return [cfg.model] if "model" in cfg.model_fields_set else [None]


def _shared_dapt(cfg: CompareConfig, base: dict[str, Any], final: Path, resuming: bool) -> tuple[str | None, dict[str, Any] | None]:
    """--dapt-text: adapt the encoder once, beside the comparison (OUT-dapt); every job fine-tunes the
    adapted encoder (its thawkit.json names it and carries the DAPT facts). Returns the adapted model."""
    from thawkit.planner import adapt_backbone, dapt_folder, plan_run

    if cfg.dapt_text is None:
        return None, None
    if cfg.models:
        raise ConfigError(f"--dapt-text adapts one encoder, and --models compares {len(cfg.models)}; fix: compare one --model "
                          "with --dapt-text, or adapt each model with 'thawkit dapt' and pass the adapted folders to --models")
    first = _strategies(cfg)[0]
    model = _given_models(cfg)[0]
    probe = plan_run({**base, "dapt_text": None, **({"model": model} if model else {}), "strategy": first,
                      "strategy_options": cfg.strategy_options.get(first, {}), "out": None},
                     "compare", dry_run=True)  # the max length the jobs will use
    adapted, facts = adapt_backbone(probe.config, Path(cfg.dapt_text), dapt_folder(final), reuse=resuming)
    return adapted, facts


def _compare(config: CompareConfig | dict[str, Any] | None = None, sources: Mapping[str, str] | None = None,
             **options: Any) -> Comparison:
    from thawkit.advisor import parse_budget
    from thawkit.compare.report import write_report
    from thawkit.compare.results import (aggregate, candidate_name, label_summaries, load_run_summary, model_labels,
                                         model_size_advice, name_winner, write_results)
    from thawkit.rundir import check_destination, partial_dir_for, publish

    values = config.model_dump(exclude_unset=True) if isinstance(config, CompareConfig) else dict(config or {})
    values.update({k: v for k, v in options.items() if v is not None})
    resuming = values.get("resume") is not None
    if resuming:
        values = _resumed_comparison(Path(values["resume"]), values)
    cfg: CompareConfig = make_config(values, "comparison", CompareConfig)
    strategies = _strategies(cfg)
    if cfg.on_ray() and (cfg.workers > 1):
        raise ConfigError("--ray and --workers both choose where jobs run; fix: pass one of them")
    if not resuming:  # a resumed comparison's values are its saved config, checked when it started
        refuse_unhonoured(COMMANDS["compare"], {k: v for k, v in values.items() if k in TrainConfig.model_fields})
    base = cfg.train_values()
    given_sources = {k: "resumed comparison" if resuming else (sources or {}).get(k, "argument") for k in values}
    metric = cfg.metric  # None: the task's selection metric, read back from the first runs
    budget_seconds = parse_budget(cfg.budget)
    final = cfg.comparison_dir()
    check_destination(final, cfg.overwrite)
    partial = partial_dir_for(final)
    if not resuming:
        if (partial / COMPARE_CONFIG).exists() and not cfg.overwrite:
            raise ConfigError(f"{final}: an interrupted comparison of it exists; fix: continue it with "
                              f"'thawkit compare --resume {final}', or start over with --overwrite")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        from thawkit.engine.core.resume import write_json_atomically

        # What was given (not the field defaults): a resumed comparison plans its jobs as this one does.
        write_json_atomically(partial / COMPARE_CONFIG, {**cfg.model_dump(mode="json", exclude_unset=True), "resume": None,
                                                         "out": str(final)})
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    epochs_given = "epochs" in cfg.model_fields_set or cfg.successive_halving

    models = _given_models(cfg)
    adapted, dapt_facts = _shared_dapt(cfg, base, final, resuming)
    base = {**base, "dapt_text": None} if dapt_facts is not None else base
    job_sources = {k: v for k, v in given_sources.items() if k in base}
    model_sources = {m: given_sources.get("model", "argument") for m in models if m is not None}
    if cfg.models:
        model_sources = {m: f"compare --models: job for model {i + 1} of {len(models)}" for i, m in enumerate(models)}
    if dapt_facts is not None:
        models, model_sources = [adapted], {adapted: f"compare --dapt-text: adapted once on {cfg.dapt_text}, shared by every job ({adapted})"}
    labels = model_labels([m for m in models if m is not None])
    multi = len(models) > 1

    def job(candidate: tuple[str | None, str], seed: int, epochs: float, folder: str, time_limit: float | None) -> dict[str, Any]:
        model, strategy = candidate
        # One model: the folders are named as they always were; several: by model, then strategy.
        name = f"{labels[model]}-{strategy}" if multi else strategy
        out = partial / folder / f"{name}-seed{seed}"
        per_job = {"strategy": "compare: one job per strategy", "seed": "compare: base seed + seed index",
                   "split_seed": "compare: identical splits for every job", "out": "compare: the job's folder",
                   "progress": "compare: one line per evaluation", "overwrite": "compare: each job writes a new folder",
                   **({"time_limit_seconds": "compare: the budget's share per job"} if time_limit else {}), **({"epochs": f"compare: rung of {epochs:g} epochs"}
                                                                      if folder != "runs" else {})}
        return {
            "sources": {**job_sources, **per_job, **({"model": model_sources[model]} if model is not None else {})},
            "facts": {"dapt": dapt_facts},
            # Resuming: finished runs are reused, interrupted ones continue from their checkpoint.
            **({"finished": str(out)} if resuming and (out / "thawkit.json").exists() else {}),
            **({"resume": str(out)} if resuming and _has_checkpoint(out) else {}),
            **base, **({"model": model} if model is not None else {}),
            "strategy": strategy, "strategy_options": cfg.strategy_options.get(strategy, {}), "seed": seed,
            "split_seed": cfg.data_split_seed(),  # identical splits for every run
            # Epochs not given: each run picks its own (more for small data, as `thawkit train` does).
            **({"epochs": epochs} if epochs_given or folder != "runs" else {}),
            **({"time_limit_seconds": time_limit or cfg.time_limit_seconds} if (time_limit or cfg.time_limit_seconds) else {}),
            "out": str(out), "overwrite": False,
            "progress": "lines" if cfg.progress != "off" else "off",
        }

    # Model by model (each model's jobs in its strategies' order, so its cache passes are reused).
    candidates = [(m, s) for m in models for s in strategies]
    from thawkit.compare.jobs import job_values
    from thawkit.planner import check_task_and_strategy

    from thawkit.compare.baselines import check_prompting, prompting_summary

    baselines: list[dict[str, Any]] = []
    try:  # a strategy the task refuses is one line now, not after every other job has trained
        for candidate in candidates:
            check_task_and_strategy(job_values(job(candidate, seeds[0], cfg.epochs, "runs", None)))
        check_prompting(cfg)
        if cfg.prompt_shots is not None:  # first: its refusals (a multi-label file, an encoder) come before any training
            baselines.append(prompting_summary(cfg, partial / "runs" / "prompting"))
    except ConfigError:
        if not resuming:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    started = time.perf_counter()
    extra: dict[str, dict[str, Any]] = {}
    summaries: list[dict[str, Any]] = []
    search: dict[str, Any] | None = None
    try:
        if cfg.successive_halving and len(strategies) > 1 and cfg.on_ray():
            from thawkit.compare.ray_jobs import asha_search

            limit = budget_seconds / (len(candidates) * len(seeds)) if budget_seconds else None
            jobs = [job(c, seed, cfg.epochs, "runs", limit) for c in candidates for seed in seeds]
            summaries, extra, search = asha_search(jobs, cfg, budget_seconds, partial / "tune")
            metric = metric or next(s["info"]["metric"] for s in summaries if s["info"].get("metric"))
        elif cfg.successive_halving and len(candidates) > 1:
            rungs = math.ceil(math.log2(len(candidates))) + 1
            alive = list(candidates)
            for rung in range(rungs):
                epochs = max(1.0, cfg.epochs * 2.0 ** (rung - (rungs - 1)))
                limit = budget_seconds / rungs / (len(alive) * len(seeds)) if budget_seconds else None
                jobs = [job(c, seed, epochs, f"rung{rung}", limit) for c in alive for seed in seeds]
                rung_summaries = label_summaries([load_run_summary(Path(p)) for p in _run_jobs(jobs, cfg)], multi, labels)
                metric = metric or _metric_of(rung_summaries)
                ranking = aggregate(rung_summaries, metric)
                keep = max(1, math.ceil(len(alive) / 2)) if rung < rungs - 1 else len(alive)
                survivors = [r["name"] for r in ranking[:keep]]
                for row in ranking[keep:]:
                    extra[row["name"]] = {"eliminated_at_rung": rung, "rung_epochs": epochs}
                    summaries.extend(s for s in rung_summaries if s["name"] == row["name"])
                if rung == rungs - 1:
                    summaries.extend(s for s in rung_summaries if s["name"] in survivors)
                    for name in survivors:
                        extra[name] = {"eliminated_at_rung": None, "rung_epochs": epochs}
                    break
                log.info("successive halving, rung %d (%g epochs): keeping %s", rung, epochs, ", ".join(survivors))
                alive = [c for c in alive if candidate_name(c, labels, multi) in survivors]
        else:
            limit = budget_seconds / (len(candidates) * len(seeds)) if budget_seconds else None
            jobs = [job(c, seed, cfg.epochs, "runs", limit) for c in candidates for seed in seeds]
            summaries = [load_run_summary(Path(p)) for p in _run_jobs(jobs, cfg)]
            metric = metric or _metric_of(summaries)
        summaries = label_summaries(summaries + baselines, multi, labels)
        for baseline in baselines:  # its own model beside the jobs' one: named by it, as with --models
            baseline["name"] = f"{baseline['model']} · {baseline['info']['strategy']}"
        rows = aggregate(summaries, metric, extra)
        winner = name_winner(rows, metric)
        advice = None
        if cfg.advise:
            try:
                from thawkit.advisor import advise

                advice = advise(cfg.data, model=models[0] or cfg.model, text_col=cfg.text_col, text_pair_col=cfg.text_pair_col,
                                label_col=cfg.label_col, validation=cfg.validation, budget=cfg.budget,
                                max_length=cfg.max_length, seed=cfg.seed, task=cfg.task).as_dict()
            except Exception as exc:  # noqa: BLE001  (the report is still useful without it)
                log.warning("Hint: advisor unavailable for the report: %s", exc)
        # Paths as they will be once the comparison folder is in place.
        for row in rows:
            row["runs"] = [str(final / Path(p).relative_to(partial)) for p in row["runs"] if p is not None]
        models_advice = model_size_advice(rows, metric) if multi else None
        meta = {
            "strategies": strategies, "models": cfg.models, "models_advice": models_advice, "seeds": seeds, "budget": cfg.budget, "successive_halving": cfg.successive_halving,
            "wall_seconds": round(time.perf_counter() - started, 2), "advice": advice,
            "ray": {"address": cfg.ray_address or "local", "cpus_per_job": cfg.ray_cpus, "gpus_per_job": cfg.ray_gpus,
                    **({"search": search} if search is not None else {})} if cfg.on_ray() else None,
            "config": cfg.model_dump(mode="json"),
        }
        write_results(rows, winner, metric, partial, meta)
        for summary in summaries:
            if summary["path"] is not None:  # None: a trial stopped by ASHA, no run folder
                summary["path"] = str(final / Path(summary["path"]).relative_to(partial))
        write_report(partial, summaries, rows, winner, metric, advice, models_advice)
    except BaseException as exc:
        # Bad input discards the comparison; an interruption keeps finished runs and checkpoints
        # for 'thawkit compare --resume'.
        if isinstance(exc, ConfigError) or not any(partial.glob("*/*/thawkit.json")) and not any(partial.glob("*/.*.partial")):
            shutil.rmtree(partial, ignore_errors=True)
        else:
            log.warning("Interrupted comparison kept in %s; continue with: thawkit compare --resume %s", partial, final)
        raise
    (partial / COMPARE_CONFIG).unlink(missing_ok=True)
    publish(partial, final, cfg.overwrite)
    return Comparison(final, rows, winner, advice, metric, models_advice)
