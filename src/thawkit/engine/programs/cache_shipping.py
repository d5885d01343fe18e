"""The frozen-layer cache of a run, computed without training and shipped to other machines:
a scheduler (``compare --ray``) runs ``warm_cache`` once and hands the entries to every job,
which ``install_cache``s them into its node's cache folder before training."""

from __future__ import annotations

import math
from typing import Any

from thawkit.config import TrainConfig
from thawkit.engine.core.arguments import steps_per_epoch
from thawkit.engine.core.loop import prepare_controller
from thawkit.engine.core.pipeline import attach_cache, encoded_split, prepare_run
from thawkit.runplan import RunPlan


def warm_cache(plan: RunPlan) -> dict[str, dict[str, Any]]:
    """Compute (or find) the frozen-layer cache entries the planned run will read, without training;
    returns them as shippable bundles by key (empty when the run has nothing frozen to cache).
    A scheduler runs this once and hands the entries to every job (``FeatureStore.install``)."""
    from thawkit.engine.cache.store import FeatureStore

    cfg, task = plan.config, plan.task
    if not cfg.cache:
        return {}
    strategy = plan.build_strategy()
    prepared = prepare_run(plan, strategy)
    data, tokenizer = prepared.data, prepared.tokenizer
    model = strategy.prepare(prepared.model, task.peft_task_type)
    layout, controller, _ever_trainable = prepare_controller(strategy, model, cfg)
    train_ds = encoded_split(task, data, "train", tokenizer, cfg)
    val_ds = encoded_split(task, data, "validation", tokenizer, cfg)
    controller.strategy.plan_schedule(math.ceil(steps_per_epoch(cfg, len(train_ds)) * cfg.epochs), layout)  # as the run will
    store = FeatureStore(cfg.cache_dir, cfg.cache_ram_budget_mb)
    runtime, _reason = attach_cache(plan, controller, tokenizer, train_ds, val_ds, store)
    if runtime is None:
        return {}
    return {key: store.bundle(key) for key in dict.fromkeys(store.used)}


def install_cache(cfg: TrainConfig, bundles: dict[str, dict[str, Any]]) -> None:
    """Entries computed elsewhere (``warm_cache``) put into this machine's cache folder."""
    from thawkit.engine.cache.store import FeatureStore

    store = FeatureStore(cfg.cache_dir, cfg.cache_ram_budget_mb)
    for key, bundle in bundles.items():
        store.install(key, bundle)
