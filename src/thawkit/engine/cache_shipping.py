"""The frozen-layer cache of a run, computed without training and shipped to other machines:
a scheduler (``compare --ray``) runs ``warm_cache`` once and hands the entries to every job,
which ``install_cache``s them into its node's cache folder before training."""

from __future__ import annotations

import math
from typing import Any

from thawkit.config import TrainConfig
from thawkit.engine.loop import prepare_controller
from thawkit.engine.pipeline import attach_cache, encoded_split, prepare_run
from thawkit.strategies import get_strategy_class
from thawkit.tasks import get_task


def warm_cache(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """Compute (or find) the frozen-layer cache entries ``cfg``'s run will read, without training;
    returns them as shippable bundles by key (empty when the run has nothing frozen to cache).
    A scheduler runs this once and hands the entries to every job (``FeatureStore.install``)."""
    from thawkit.engine.cache import FeatureStore

    task = get_task(cfg.task)
    strategy = get_strategy_class(cfg.strategy)(cfg.strategy_config())
    task.check_config(cfg, strategy)
    length_given = cfg.max_length is not None
    cfg = cfg.resolved()
    if not cfg.cache or not task.cacheable:
        return {}
    prepared = prepare_run(cfg, task, strategy, length_given)
    cfg, data, tokenizer = prepared.cfg, prepared.data, prepared.tokenizer
    model = strategy.prepare(prepared.model, task.peft_task_type)
    layout, controller, _ever_trainable = prepare_controller(strategy, model, cfg)
    train_ds = encoded_split(task, data, "train", tokenizer, cfg)
    val_ds = encoded_split(task, data, "validation", tokenizer, cfg)
    steps_per_epoch = math.ceil(len(train_ds) / (cfg.batch_size * cfg.gradient_accumulation_steps))
    controller.strategy.plan_schedule(math.ceil(steps_per_epoch * cfg.epochs), layout)
    store = FeatureStore(cfg.cache_dir, cfg.cache_ram_budget_mb)
    runtime, _reason = attach_cache(cfg, task, controller, tokenizer, train_ds, val_ds, 1, store)
    if runtime is None:
        return {}
    return {key: store.bundle(key) for key in dict.fromkeys(store.used)}


def install_cache(cfg: TrainConfig, bundles: dict[str, dict[str, Any]]) -> None:
    """Entries computed elsewhere (``warm_cache``) put into this machine's cache folder."""
    from thawkit.engine.cache import FeatureStore

    store = FeatureStore(cfg.cache_dir, cfg.cache_ram_budget_mb)
    for key, bundle in bundles.items():
        store.install(key, bundle)
