"""The one training sequence, for every task and every strategy.

plan -> tokenizer -> model -> guards -> strategy -> cache -> Trainer -> final metrics ->
forgetting -> merge check -> run directory. The plan (``thawkit.planner.plan_run``) has resolved
every setting and loaded the task's data; a task supplies its model, encoding, collator, metrics
and artifact layout (``thawkit.tasks.base.Task``); a strategy supplies its plan and facts. Nothing
here defaults a setting, or knows a task's or a strategy's name.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import torch

from thawkit.config import TrainConfig
from thawkit.engine.core.arguments import peak_memory_mb, reachable_stages, reset_peak_memory, steps_per_epoch, training_arguments
from thawkit.engine.core.distill_loss import Distillation, TeacherRowCollator
from thawkit.engine.core.loggers import report_run
from thawkit.engine.core.artifacts import measure_forgetting_of, merge_checked, write_run_files
from thawkit.engine.cache.cached_training import SwitchableCollator, SwitchableDataset, sorted_order
from thawkit.engine.core.loop import RunHooks, build_loop, prepare_controller, run_loop, stop_run
from thawkit.engine.core.resume import write_plan
from thawkit.engine.core.scoring import final_metrics
from thawkit.engine.core.trainability import set_requires_grad
from thawkit.engine.core.warm_start import WarmStart
from thawkit.guards import GuardReport
from thawkit.guards.imbalance import balanced_class_weights, check_collapse, check_imbalance, weights_apply
from thawkit.guards.learning_rate import check_learning_rate
from thawkit.guards.overfitting import check_overfitting
from thawkit.guards.tokenizer import check_tokenizer
from thawkit.errors import ConfigError
from thawkit.models.backbone import align_pad_token, load_tokenizer, resolve_model_path
from thawkit.models.layout import HEAD
from thawkit.rundir import check_destination, exclusive, partial_dir_for
from thawkit.runplan import RunPlan, out_dir, world_size
from thawkit.strategies import Strategy
from thawkit.tasks import RunBase, Task, TaskData

log = logging.getLogger("thawkit")


@dataclass
class Prepared:
    """What the sequence has built before training starts."""

    data: TaskData
    tokenizer: Any
    model: Any
    guards: GuardReport
    class_weights: list[float] | None
    timings: dict[str, float] = field(default_factory=dict)


def run_training(plan: RunPlan, extra_facts: dict[str, Any] | None = None, distillation: Distillation | None = None,
                 hooks: RunHooks | None = None, warm_start: WarmStart | None = None) -> RunBase:
    """Train as ``plan`` says and write its run directory; with ``distillation`` (a teacher of the
    same task and labels), its outputs are soft targets; ``hooks``: what a scheduler (Ray Tune, Ray
    Train) adds to the loop; ``warm_start``: a finished run's weights the model starts from (once
    the strategy has frozen or wrapped it); ``extra_facts``: what the caller adds to thawkit.json."""
    with exclusive(out_dir(plan)):
        return _run_training(plan, extra_facts, distillation, hooks, warm_start)


def _run_training(plan: RunPlan, extra_facts: dict[str, Any] | None, distillation: Distillation | None = None,
                  hooks: RunHooks | None = None, warm_start: WarmStart | None = None) -> RunBase:
    from transformers import set_seed

    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()  # now that transformers is imported

    reset_peak_memory()
    started = time.perf_counter()
    cfg, task = plan.config, plan.task
    strategy = plan.build_strategy()
    final_dir = out_dir(plan)
    check_destination(final_dir, cfg.overwrite)
    partial_dir = partial_dir_for(final_dir)
    resume_from = _resume_point(cfg, final_dir, partial_dir)
    set_seed(cfg.seed)
    prepared = prepare_run(plan, strategy)
    data, tokenizer = prepared.data, prepared.tokenizer
    timings = prepared.timings

    model = strategy.prepare(prepared.model, task.peft_task_type)
    started_from = warm_start.apply(model) if warm_start is not None else None  # before the cache fingerprints the weights
    layout, controller, ever_trainable = prepare_controller(strategy, model, cfg)
    args = training_arguments(cfg, partial_dir / "checkpoints", controller.num_stages > 1)
    is_main = args.process_index == 0
    mark = time.perf_counter()
    train_ds = encoded_split(task, data, "train", tokenizer, cfg)
    val_ds = encoded_split(task, data, "validation", tokenizer, cfg)
    timings["tokenize"] = time.perf_counter() - mark
    if distillation is not None and distillation.precomputed:
        mark = time.perf_counter()
        train_ds = distillation.attach_targets(task, data, tokenizer, cfg, train_ds)
        timings["teacher_targets"] = time.perf_counter() - mark
    per_epoch = steps_per_epoch(cfg, len(train_ds), args.world_size)
    controller.strategy.plan_schedule(math.ceil(per_epoch * cfg.epochs), layout)  # gradual: stages spread over the run
    with args.main_process_first(desc="prepare run directory"):  # the plan first: a kill in the cache pass can be resumed
        if is_main and partial_dir.exists() and resume_from is None:
            shutil.rmtree(partial_dir)  # left over from a run that reached no checkpoint, or --overwrite
        if is_main:
            saved = plan.as_dict()
            saved["config"]["resume"] = None  # a resumed run resumes from its folder, wherever it was started from
            write_plan(partial_dir, saved)
    runtime, cache_reason = (None, "off: distill trains without it") if distillation is not None else \
        attach_cache(plan, controller, tokenizer, train_ds, val_ds)

    collator = SwitchableCollator(tokenizer, task.collator(tokenizer)) if task.cacheable else task.collator(tokenizer)
    if distillation is not None and distillation.precomputed:
        collator = TeacherRowCollator(collator)
    loop = build_loop(cfg, controller, args, train_ds, val_ds, collator, tokenizer, task.metric_function(data, "validation"),
                      cfg.metric, ever_trainable, class_weights=prepared.class_weights,
                      materialize=runtime.materialize if runtime is not None else None, distillation=distillation,
                      hooks=hooks, reduce_logits=task.logits_for_metrics(),
                      training_loss=task.training_loss(), warm_started=warm_start is not None)
    trainer, history, best = loop.trainer, loop.history, loop.best
    if resume_from is not None:
        _prepare_resume(loop, resume_from)
    closed_form = _closed_form_fit(strategy, loop, controller, cfg, ever_trainable)
    training_loss, train_seconds = run_loop(loop, partial_dir, is_main, runtime, closed_form.fit if closed_form else None,
                                            resume_from=resume_from)
    timings["train"] = train_seconds
    # Whatever stops the run from here on (a guard under --strict, a failed merge check) leaves nothing.
    try:
        prepared.guards.add(check_overfitting(history.records))
        if cfg.progress != "off":
            if best.stopped_early:
                log.info("Early stopping: no %s gain for %d evaluations", cfg.metric, cfg.early_stopping_patience)
            if best.summary()["restored_best"]:
                log.info("Restored the best checkpoint (epoch %s, %s %.4f)", best.best_epoch, cfg.metric, best.best_value)

        model = trainer.model.eval()
        mark = time.perf_counter()
        # A few-shot model is trained again on every labeled example once its held-out split is scored.
        refit = closed_form.refit_on_every_example if closed_form is not None and strategy.refits_on_validation and \
            cfg.validation is None else None
        # As the evaluations that selected the epoch ran; a calibration is fitted on validation on the way.
        metrics, calibration = final_metrics(task, data, trainer, val_ds, lambda: encoded_split(task, data, "test", tokenizer, cfg),
                                             tokenizer, cfg, refit)
        timings["evaluate"] = time.perf_counter() - mark
        model = _without_autocast(model)
        if calibration is not None:
            calibration.apply(model)  # before the model is saved, merge-checked or returned
        collapse = check_collapse(metrics["validation"])  # a majority-class model is a failure, not a result
        prepared.guards.add(collapse)
        if cfg.measure_forgetting and is_main:
            mark = time.perf_counter()
            encoder_trained = any(n not in layout.params[HEAD] for n in controller.trained())
            metrics["forgetting"] = measure_forgetting_of(cfg.model, model, tokenizer, frozen_encoder=not encoder_trained)
            history.records.append({"type": "forgetting", "step": int(trainer.state.global_step), **metrics["forgetting"]})
            timings["forgetting"] = time.perf_counter() - mark

        merge = hasattr(model, "merge_and_unload") and (strategy.merge_adapters or task.saves_merged_weights)
        info = {
            **_run_info(plan, strategy, data, model),
            **_training_facts(trainer, controller, layout, loop, train_seconds, training_loss, args.world_size),
            "merged_lora": merge,
            "precision": "bf16 autocast, fp32 weights" if args.bf16 else "fp32",
            "cache": runtime.summary() if runtime is not None else {"used": False, "reason": cache_reason},
            "guards": prepared.guards.as_list(),
            "class_weights": prepared.class_weights,
            "plan": plan.record(),  # every setting a rule decided, with its source
            "defaults_source": plan.source("lr"),  # where the LR came from
            "epochs_source": plan.source("epochs") if plan.source("epochs").startswith("small data") else None,
            "advice": plan.facts.get("advice"),
            "dapt": plan.facts.get("dapt"),
            "failed": collapse[0].message if collapse else None,
            "calibration": calibration.facts if calibration is not None else None,
            **({"warm_start": started_from} if started_from is not None else {}),
            **(extra_facts or {}),
        }
        if is_main:
            if merge:
                model = merge_checked(model, _sample_batch(collator, val_ds, model))
            labels = {"labels": data.labels, "multi_label": data.multi_label}
            saved = model
            # Seconds per phase, up to the write (whose own time is not in the file it writes).
            info["timings"] = {k: round(v, 3) for k, v in {**timings, "total_before_save": time.perf_counter() - started}.items()}
            write_run_files(cfg, partial_dir, final_dir, tokenizer, labels, info, metrics, history.records,
                            lambda folder: task.save_model(saved, folder, cfg.model, cfg.max_length), task)
            report_run(cfg.report_to, final_dir, info, metrics)
    except BaseException as exc:
        replacement = stop_run(partial_dir, exc, is_main)  # a kill while writing: the checkpoints are still there
        if replacement is not None:
            raise replacement from exc
        raise
    trainer.accelerator.wait_for_everyone()
    set_requires_grad(model, [])
    return task.make_run(model, tokenizer, data, info, final_dir)


def _without_autocast(model: Any) -> Any:
    """The model without the bf16-autocast forward Accelerate installs for training: what the run
    returns, saves and merge-checks computes in fp32, as the model reloaded from its folder does."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False)


def _resume_point(cfg: TrainConfig, final_dir: Path, partial_dir: Path) -> Path | None:
    """The checkpoint to continue from (--resume), or None; a fresh start never deletes an
    interrupted run's checkpoints unless --overwrite says so."""
    from thawkit.engine.core.resume import complete_checkpoints, find_resume_point

    if cfg.resume is not None:
        return find_resume_point(Path(cfg.resume))[2]
    kept = complete_checkpoints(partial_dir / "checkpoints")
    if kept and not cfg.overwrite:
        raise ConfigError(f"{final_dir}: an interrupted run of it has a checkpoint at step {kept[-1].name.split('-')[-1]}; "
                          f"fix: continue it with 'thawkit train --resume {final_dir}', or start over with --overwrite")
    return None


def _prepare_resume(loop: Any, checkpoint: Path) -> None:
    """thawkit's state from the checkpoint; the optimizer groups of its stage are rebuilt when the
    Trainer creates the optimizer, before it loads the optimizer state."""
    from thawkit.engine.core.resume import CheckpointState

    state = CheckpointState.read(checkpoint)
    loop.checkpoint_state.restore(checkpoint)
    loop.trainer.resume_stage = int(state["stage"])
    loop.trainer.resume_step = int(checkpoint.name.split("-")[-1])
    loop.trainer.resume_losses = state.get("losses")  # None in checkpoints from versions that did not keep them
    log.info("Resuming from %s (stage %s)", checkpoint, state["stage"])


def prepare_run(plan: RunPlan, strategy: Strategy) -> Prepared:
    """Tokenizer, model and the guards that run before training, on the plan's data."""
    cfg, task = plan.config, plan.task
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    data = plan.data()
    timings["load_data"] = time.perf_counter() - mark
    mark = time.perf_counter()
    tokenizer = load_tokenizer(cfg.tokenizer)
    if task.needs_fast_tokenizer and not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"--task {task.name} needs a fast tokenizer (offsets); {cfg.tokenizer} has none; "
                          "fix: use a model that ships tokenizer.json")
    model = task.build_model(cfg, data, strategy)
    align_pad_token(model, tokenizer)
    if plan.source("epochs").startswith("small data"):
        log.info("Epochs: %s", plan.source("epochs"))
    timings["load_model"] = time.perf_counter() - mark
    guards = GuardReport(strict=cfg.strict)
    # A default measured for this task and model size is sane for it (NER partial on MiniLM: 1e-3).
    guards.add(check_learning_rate(cfg.strategy, cfg.lr, max(strategy.sane_max_lr, plan.measured.get("lr", 0.0))))
    guards.add(check_tokenizer(tokenizer, model, task.sample_texts(data)))
    counts = task.class_counts(data)
    class_weights = None
    if counts is not None:
        guards.add(check_imbalance(counts, cfg.class_weights, cfg.metric))
        if weights_apply(counts, cfg.class_weights):
            ordered = [counts[label] for label in data.labels]
            # multi-label: positives of label c are up-weighted by negatives / positives
            class_weights = ([(len(data.train) - c) / max(c, 1) for c in ordered] if data.multi_label
                             else balanced_class_weights(ordered))
    return Prepared(data, tokenizer, model, guards, class_weights, timings)


def encoded_split(task: Task, data: TaskData, split: str, tokenizer: Any, cfg: TrainConfig) -> Any:
    """The encoded split; for cacheable tasks wrapped so the cached path can swap in stored states,
    evaluation splits sorted by length (less padding)."""
    encoded = task.encode(data, split, tokenizer, cfg)
    if not task.cacheable:
        return encoded
    in_length_order = split != "train" and task.eval_in_length_order
    return SwitchableDataset(encoded, order=sorted_order(encoded) if in_length_order else None)


def attach_cache(plan: RunPlan, controller: Any, tokenizer: Any, train_ds: Any, val_ds: Any, store: Any = None) -> tuple[Any, str]:
    """The frozen-layer cache where the plan has it on and it is exact and useful; else None and the reason."""
    from thawkit.engine.cache.cached_training import prepare_cached_path
    from thawkit.engine.cache.store import FeatureStore

    cfg = plan.config
    if not cfg.cache:
        return None, plan.cache_reason
    runtime, reason = prepare_cached_path(
        controller, controller.model, tokenizer, {"train": train_ds, "validation": val_ds}, cfg.max_length, cfg.cache_dtype,
        store if store is not None else FeatureStore(cfg.cache_dir, cfg.cache_ram_budget_mb), autocast_bf16=cfg.cache_dtype == "bfloat16",
        batch_size=cfg.eval_batch_size, reachable_stages=reachable_stages(controller.strategy, cfg, len(train_ds), world_size(cfg)),
    )
    if runtime is not None:
        controller.listeners.append(runtime.follow)
        controller.full_structure = runtime.surgery.restored
    elif "self-check" in reason:
        log.info("Hint: frozen-layer cache not used: %s", reason)
    return runtime, reason


def _closed_form_fit(strategy: Any, loop: Any, controller: Any, cfg: TrainConfig, ever_trainable: set[str]) -> Any:
    """Training replaced by a closed-form head fit (its ``fit``), or by one evaluation when nothing can train."""
    trainer, history = loop.trainer, loop.history
    candidates = strategy.feature_head_candidates
    if candidates:
        from thawkit.engine.core.feature_heads import FeatureHeadFit

        return FeatureHeadFit(trainer, controller, history, cfg.seed, candidates, cfg.metric, body=strategy.contrastive_phase(),
                              progress=cfg.progress != "off")
    if ever_trainable:
        return None

    def evaluate_pretrained() -> None:
        # Nothing trains (a frozen bi-encoder has no head): the run is the pretrained model, evaluated.
        controller.enter(0, 0)
        history.on_train_begin(trainer.args, trainer.state, trainer.control)
        trainer.state.epoch = 0.0
        trainer.evaluate()
        history.on_train_end(trainer.args, trainer.state, trainer.control)

    return SimpleNamespace(fit=evaluate_pretrained, refit_on_every_example=lambda: None)


def _sample_batch(collator: Any, dataset: Any, model: Any) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    batch = collator([dataset[i] for i in range(min(8, len(dataset)))])
    return {k: v.to(device) for k, v in batch.items() if k != "labels" and isinstance(v, torch.Tensor)}


def _run_info(plan: RunPlan, strategy: Strategy, data: TaskData, model: Any) -> dict[str, Any]:
    from thawkit.version import __version__

    cfg, task = plan.config, plan.task
    closed_form = bool(strategy.feature_head_candidates)
    return {
        "thawkit_version": __version__,
        "task": task.run_type,
        "strategy": cfg.strategy,
        "strategy_options": strategy.config.model_dump(),
        "strategy_resolved": strategy.resolved_options(),
        "base_model": cfg.model,
        "base_model_path": resolve_model_path(cfg.model),
        "model_type": model.config.model_type,
        "validation_source": data.validation_source,
        "num_train_examples": len(data.train),
        "num_validation_examples": len(data.validation),
        "metric": cfg.metric,
        # A closed-form head (scikit-learn) uses no learning rate; a contrastive body phase does.
        "learning_rate": cfg.lr if strategy.contrastive_phase() is not None or not closed_form else None,
        "head_fit": _head_fit(model) if closed_form else "gradient descent",
        "body_training": getattr(model, "body_training", None),  # a contrastive phase before the head (fewshot)
        "refit": getattr(model, "refit", None),  # the saved model trained again on training + validation (fewshot)
        "config": cfg.model_dump(mode="json"),
        **task.run_facts(data),
    }


def _head_fit(model: Any) -> str:
    selection = getattr(model, "head_selection", None)
    if selection is None or len(selection["validation"]) == 1:
        return "closed-form (scikit-learn logistic regression)"
    scores = ", ".join(f"{k} {v:.4f}" for k, v in selection["validation"].items())
    return f"{selection['chosen']} chosen on validation ({scores}) over cached pooled features"


def _training_facts(trainer: Any, controller: Any, layout: Any, loop: Any, train_seconds: float,
                    training_loss: float | None, world_size: int) -> dict[str, Any]:
    """What thawkit.json says about the training itself."""
    model, trained = trainer.model, controller.trained()
    return {
        "train_seconds": round(train_seconds, 3),
        "train_loss": training_loss,
        "global_steps": int(trainer.state.global_step),
        "best": loop.best.summary(),
        "stopped_by_time_limit": bool(loop.time_limit and loop.time_limit.stopped),
        # Everything the stages the run reached trained (for gradual: the most that was thawed).
        "trainable_params": sum(p.numel() for n, p in model.named_parameters() if n in trained),
        "total_params": sum(p.numel() for p in model.parameters()),
        "num_layers": layout.num_layers,
        "stages": controller.stage_log,
        "world_size": world_size,
        "peak_memory_mb": peak_memory_mb(),
    }
