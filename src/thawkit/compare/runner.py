"""Train several strategies on identical splits and seeds, within a shared budget, and report."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from thawkit.errors import ConfigError
from thawkit.models.backbone import DEFAULT_MODEL

log = logging.getLogger("thawkit")


class CompareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    data: Path
    validation: Path | None = None
    test: Path | None = None
    text_col: str | None = None
    text_pair_col: str | None = None
    label_col: str | None = None
    model: str = DEFAULT_MODEL
    strategies: list[str] = Field(default_factory=lambda: ["all"], description="names, or ['all']")
    seeds: int = Field(default=1, ge=1, le=20, description="seeds per strategy (base seed, +1, +2, ...)")
    seed: int = Field(default=42, ge=0)
    epochs: float = Field(default=3, gt=0)
    batch_size: int = Field(default=16, gt=0)
    max_length: int = Field(default=128, ge=8)
    metric: str = Field(default="macro_f1")
    budget: str | None = Field(default=None, description="total time budget, e.g. 20m")
    successive_halving: bool = Field(default=False, description="drop the worse half of strategies per rung")
    workers: int = Field(default=1, ge=1, description="parallel training processes")
    ray: bool = Field(default=False, description="run jobs as Ray tasks (needs the [ray] extra)")
    advise: bool = Field(default=True, description="put the advisor's recommendation next to the winner")
    out: Path | None = None
    overwrite: bool = False
    train_options: dict[str, Any] = Field(default_factory=dict, description="further thawkit.train options")


@dataclass
class Comparison:
    path: Path
    rows: list[dict[str, Any]]
    winner: dict[str, Any]
    advice: dict[str, Any] | None

    def table(self) -> list[dict[str, Any]]:
        return self.rows


def _train_job(values: dict[str, Any], threads: int | None = None) -> str:
    """One training run (importable at top level, so process pools and Ray can call it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
    if threads:
        import torch

        torch.set_num_threads(threads)
    from thawkit.api import train
    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()
    run = train(values)
    validation = run.metrics["validation"]
    metric = values.get("metric", "macro_f1")
    seconds = run.info["train_seconds"] + (run.info.get("cache") or {}).get("pass_seconds", 0.0)
    print(f"  {values['strategy']:8s} seed {values['seed']}: {metric} {validation.get(metric, float('nan')):.4f} "
          f"in {seconds:.1f}s ({values['epochs']:g} epochs)", flush=True)
    return str(run.path)


def _run_jobs(jobs: list[dict[str, Any]], cfg: CompareConfig) -> list[str]:
    if cfg.ray:
        try:
            import ray
        except ImportError:
            raise ConfigError("--ray needs Ray; fix: pip install 'thawkit[ray]' (or drop --ray)") from None
        ray.init(ignore_reinit_error=True)
        remote = ray.remote(_train_job)
        return list(ray.get([remote.remote(job) for job in jobs]))
    if cfg.workers <= 1 or len(jobs) <= 1:
        return [_train_job(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_train_job, jobs, [threads] * len(jobs)))


def _strategies(cfg: CompareConfig) -> list[str]:
    from thawkit.registry import available_strategies, get_strategy_class

    names = available_strategies() if cfg.strategies in (["all"], []) else cfg.strategies
    for name in names:
        get_strategy_class(name)  # a clear error for an unknown name
    order = ["frozen", "partial", "gradual", "llrd", "lora", "full"]  # widest cache passes first
    return sorted(dict.fromkeys(names), key=lambda n: order.index(n) if n in order else len(order))


def compare(config: CompareConfig | dict[str, Any] | None = None, **options: Any) -> Comparison:
    """Train every strategy × seed on identical splits; write results.csv/json and the report."""
    from thawkit.advisor import parse_budget
    from thawkit.compare.report import write_report
    from thawkit.compare.results import aggregate, load_run_summary, name_winner, write_results
    from thawkit.rundir import check_destination, partial_dir_for, publish

    values = config.model_dump() if isinstance(config, CompareConfig) else dict(config or {})
    values.update({k: v for k, v in options.items() if v is not None})
    try:
        cfg = CompareConfig(**values)
    except Exception as exc:  # pydantic's ValidationError, as one line
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            from thawkit.config import _describe

            raise ConfigError(f"invalid comparison: {_describe(exc)}") from None
        raise
    strategies = _strategies(cfg)
    budget_seconds = parse_budget(cfg.budget)
    final = Path(cfg.out) if cfg.out is not None else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    check_destination(final, cfg.overwrite)
    partial = partial_dir_for(final)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    seeds = [cfg.seed + i for i in range(cfg.seeds)]

    def job(strategy: str, seed: int, epochs: float, folder: str, time_limit: float | None) -> dict[str, Any]:
        return {
            **cfg.train_options,
            "data": str(cfg.data), "validation": str(cfg.validation) if cfg.validation else None,
            "test": str(cfg.test) if cfg.test else None, "text_col": cfg.text_col, "text_pair_col": cfg.text_pair_col,
            "label_col": cfg.label_col, "model": cfg.model, "strategy": strategy, "seed": seed,
            "split_seed": cfg.seed,  # identical splits for every run
            "epochs": epochs, "batch_size": cfg.batch_size, "max_length": cfg.max_length, "metric": cfg.metric,
            "time_limit_seconds": time_limit, "out": str(partial / folder / f"{strategy}-seed{seed}"),
            "progress": False,
        }

    started = time.perf_counter()
    extra: dict[str, dict[str, Any]] = {}
    summaries: list[dict[str, Any]] = []
    try:
        if cfg.successive_halving and len(strategies) > 1:
            rungs = math.ceil(math.log2(len(strategies))) + 1
            alive = list(strategies)
            for rung in range(rungs):
                epochs = max(1.0, cfg.epochs * 2.0 ** (rung - (rungs - 1)))
                limit = budget_seconds / rungs / (len(alive) * len(seeds)) if budget_seconds else None
                jobs = [job(s, seed, epochs, f"rung{rung}", limit) for s in alive for seed in seeds]
                rung_summaries = [load_run_summary(Path(p)) for p in _run_jobs(jobs, cfg)]
                ranking = aggregate(rung_summaries, cfg.metric)
                keep = max(1, math.ceil(len(alive) / 2)) if rung < rungs - 1 else len(alive)
                survivors = [r["strategy"] for r in ranking[:keep]]
                for row in ranking[keep:]:
                    extra[row["strategy"]] = {"eliminated_at_rung": rung, "rung_epochs": epochs}
                    summaries.extend(s for s in rung_summaries if s["info"]["strategy"] == row["strategy"])
                if rung == rungs - 1:
                    summaries.extend(s for s in rung_summaries if s["info"]["strategy"] in survivors)
                    for name in survivors:
                        extra[name] = {"eliminated_at_rung": None, "rung_epochs": epochs}
                    break
                log.info("successive halving, rung %d (%g epochs): keeping %s", rung, epochs, ", ".join(survivors))
                alive = survivors
        else:
            limit = budget_seconds / (len(strategies) * len(seeds)) if budget_seconds else None
            jobs = [job(s, seed, cfg.epochs, "runs", limit) for s in strategies for seed in seeds]
            summaries = [load_run_summary(Path(p)) for p in _run_jobs(jobs, cfg)]
        rows = aggregate(summaries, cfg.metric, extra)
        winner = name_winner(rows, cfg.metric)
        advice = None
        if cfg.advise:
            try:
                from thawkit.advisor import advise

                advice = advise(cfg.data, model=cfg.model, text_col=cfg.text_col, text_pair_col=cfg.text_pair_col,
                                label_col=cfg.label_col, validation=cfg.validation, budget=cfg.budget,
                                max_length=cfg.max_length, seed=cfg.seed).as_dict()
            except Exception as exc:  # noqa: BLE001  (the report is still useful without it)
                log.warning("Hint: advisor unavailable for the report: %s", exc)
        # Paths as they will be once the comparison folder is in place.
        for row in rows:
            row["runs"] = [str(final / Path(p).relative_to(partial)) for p in row["runs"]]
        meta = {
            "strategies": strategies, "seeds": seeds, "budget": cfg.budget, "successive_halving": cfg.successive_halving,
            "wall_seconds": round(time.perf_counter() - started, 2), "advice": advice,
            "config": cfg.model_dump(mode="json"),
        }
        write_results(rows, winner, cfg.metric, partial, meta)
        for summary in summaries:
            summary["path"] = str(final / Path(summary["path"]).relative_to(partial))
        write_report(partial, summaries, rows, winner, cfg.metric, advice)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    publish(partial, final, cfg.overwrite)
    return Comparison(final, rows, winner, advice)
