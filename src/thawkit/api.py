"""The Python API: ``thawkit.train(...)`` and ``thawkit.load(path)``; the CLI calls the same functions."""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawkit.config import TrainConfig, make_config
from thawkit.data.classification import ClassificationData, load_classification_data
from thawkit.errors import ConfigError
from thawkit.guards import GuardReport
from thawkit.guards.imbalance import balanced_class_weights, check_imbalance
from thawkit.guards.learning_rate import check_learning_rate
from thawkit.guards.overfitting import check_overfitting
from thawkit.guards.tokenizer import check_tokenizer
from thawkit.models.backbone import load_sequence_classifier, load_tokenizer, resolve_model_path
from thawkit.registry import get_strategy_class
from thawkit.run import Run
from thawkit.rundir import check_destination, default_run_dir, partial_dir_for

log = logging.getLogger("thawkit")


def load(path: str | Path) -> Run:
    """Load a finished run directory for prediction or evaluation."""
    return Run.load(path)


def _tokenize(frame: Any, tokenizer: Any, max_length: int) -> Any:
    from datasets import Dataset

    columns = {"text": frame["text"].tolist(), "labels": frame["labels"].tolist()}
    has_pair = "text_pair" in frame
    if has_pair:
        columns["text_pair"] = frame["text_pair"].tolist()
    dataset = Dataset.from_dict(columns)

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        # No padding here: the collator pads each batch to its own longest example.
        return tokenizer(
            batch["text"], batch["text_pair"] if has_pair else None, truncation=True, max_length=max_length
        )

    return dataset.map(encode, batched=True, remove_columns=[c for c in columns if c != "labels"])


def _check_max_length(cfg: TrainConfig, model: Any) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and cfg.max_length > limit:
        raise ConfigError(
            f"--max-length {cfg.max_length} exceeds the model's {limit} positions; fix: pass --max-length {limit} or less"
        )


def _distributed_cpu() -> bool:
    """Launched by torchrun / accelerate launch with several processes and no GPU."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def _training_arguments(cfg: TrainConfig, output_dir: Path, multi_stage: bool) -> Any:
    from transformers import TrainingArguments

    # Accelerate only sets up CPU data parallelism (gloo) when told the run is on the CPU.
    cpu_ddp = {"use_cpu": True, "ddp_backend": "gloo"} if _distributed_cpu() else {}

    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.resolved_lr(),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        # The best weights are kept in memory by BestStateCallback; checkpoint files only on request.
        save_strategy="epoch" if cfg.save_checkpoints else "no",
        save_total_limit=2 if cfg.save_checkpoints else None,
        logging_strategy="epoch",
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=cfg.report_to or "none",
        disable_tqdm=True,
        # Gradual unfreezing thaws parameters that DDP registered but saw no gradient for yet.
        ddp_find_unused_parameters=multi_stage,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        **cpu_ddp,
    )


def _run_info(cfg: TrainConfig, data: ClassificationData, model: Any, extra: dict[str, Any]) -> dict[str, Any]:
    from thawkit import __version__

    return {
        "thawkit_version": __version__,
        "task": "sequence-classification",
        "strategy": cfg.strategy,
        "strategy_options": cfg.strategy_config().model_dump(),
        "base_model": cfg.model,
        "base_model_path": resolve_model_path(cfg.model),
        "model_type": model.config.model_type,
        "problem_type": "multi_label_classification" if data.multi_label else "single_label_classification",
        "text_col": data.text_col,
        "text_pair_col": data.text_pair_col,
        "label_col": data.label_col,
        "validation_source": data.validation_source,
        "num_train_examples": len(data.train),
        "num_validation_examples": len(data.validation),
        "learning_rate": cfg.resolved_lr(),
        "config": cfg.model_dump(mode="json"),
        **extra,
    }


def _verify_merge(peft_model: Any, merged: Any, sample: dict[str, torch.Tensor]) -> Any:
    """A merged LoRA model must predict what the adapter model did."""
    with torch.inference_mode():
        before = peft_model(**sample).logits
    merged_model = merged()
    with torch.inference_mode():
        after = merged_model(**sample).logits
    if not torch.allclose(before, after, atol=1e-4, rtol=1e-4):
        diff = (before - after).abs().max().item()
        raise RuntimeError(f"merged LoRA model differs from the adapter model (max |diff| {diff:.2e})")
    return merged_model


def train(config: TrainConfig | dict[str, Any] | None = None, **options: Any) -> Run:
    """Fine-tune a classifier with a strategy and write a run directory.

    Pass a ``TrainConfig``, a dict, or keyword options (the CLI flags' names with underscores);
    keyword options override the config. Returns the trained ``Run``.
    """
    from transformers import set_seed

    from thawkit.engine.cached_training import SwitchableCollator, SwitchableDataset, sorted_order
    from thawkit.engine.loop import build_loop, prepare_controller, run_loop
    from thawkit.engine.metrics import scalar_metrics
    from thawkit.engine.trainability import set_requires_grad

    values = config.model_dump() if isinstance(config, TrainConfig) else dict(config or {})
    values.update({k: v for k, v in options.items() if v is not None})
    cfg = make_config(values)
    if cfg.task != "classification":
        if cfg.strategy == "auto":
            raise ConfigError(f"--strategy auto is for classification so far; fix: name a strategy for --task {cfg.task}")
        if cfg.task == "ner":
            from thawkit.tasks.ner import train_ner

            return train_ner(cfg)  # type: ignore[return-value]
        if cfg.task == "qa":
            from thawkit.tasks.qa import train_qa

            return train_qa(cfg)  # type: ignore[return-value]
        from thawkit.tasks.similarity import train_similarity

        return train_similarity(cfg)  # type: ignore[return-value]
    advice = None
    if cfg.strategy == "auto":
        cfg, advice = _resolve_auto(cfg)
    final_dir = Path(cfg.out) if cfg.out is not None else default_run_dir(cfg.strategy)
    check_destination(final_dir, cfg.overwrite)
    partial_dir = partial_dir_for(final_dir)

    set_seed(cfg.seed)
    data = _load_data(cfg)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    strategy, model, fit_logreg = _build_model(cfg, data)
    guards, class_weights = _pre_training_guards(cfg, tokenizer, model, data)
    model = strategy.prepare(model)
    layout, controller, ever_trainable = prepare_controller(strategy, model, cfg)

    args = _training_arguments(cfg, partial_dir / "checkpoints", controller.num_stages > 1)
    is_main = args.process_index == 0
    train_ds = SwitchableDataset(_tokenize(data.train, tokenizer, cfg.max_length))
    val_tokens = _tokenize(data.validation, tokenizer, cfg.max_length)
    val_ds = SwitchableDataset(val_tokens, order=sorted_order(val_tokens))
    runtime, cache_reason = _attach_cache(cfg, controller, tokenizer, train_ds, val_ds, args.world_size)
    with args.main_process_first(desc="prepare run directory"):
        if is_main and partial_dir.exists():
            shutil.rmtree(partial_dir)  # left over from an interrupted run

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return scalar_metrics(np.asarray(logits), np.asarray(eval_pred.label_ids), data.multi_label)

    loop = build_loop(cfg, controller, args, train_ds, val_ds, SwitchableCollator(tokenizer), tokenizer,
                      compute_metrics, cfg.metric, ever_trainable, class_weights=class_weights)
    trainer, history, best = loop.trainer, loop.history, loop.best
    fit = None
    if fit_logreg:
        from thawkit.engine.feature_heads import fit_logreg_head

        fit = lambda: fit_logreg_head(trainer, controller, history, cfg.seed)  # noqa: E731
    training_loss, train_seconds = run_loop(loop, partial_dir, is_main, runtime, fit)
    guards.add(check_overfitting(history.records))
    if cfg.progress:
        if best.stopped_early:
            log.info("Early stopping: no %s gain for %d evaluations", cfg.metric, cfg.early_stopping_patience)
        if best.summary()["restored_best"]:
            log.info("Restored the best checkpoint (epoch %s, %s %.4f)", best.best_epoch, cfg.metric, best.best_value)

    model = trainer.model
    model.eval()
    metrics = _evaluate_splits(trainer, data, val_ds, tokenizer, cfg)
    if cfg.measure_forgetting and is_main:
        metrics["forgetting"] = _measure_forgetting(cfg, model, tokenizer)
        history.records.append({"type": "forgetting", "step": int(trainer.state.global_step), **metrics["forgetting"]})

    merge = bool(getattr(strategy.config, "merge", False))
    extra = {
        **_run_facts(trainer, controller, layout, best, loop.time_limit, train_seconds, training_loss, args.world_size),
        "merged_lora": merge,
        "cache": runtime.summary() if runtime is not None else {"used": False, "reason": cache_reason},
        "advice": advice.as_dict() if advice is not None else None,
        "guards": guards.as_list(),
        "class_weights": class_weights,
    }
    info = _run_info(cfg, data, model, extra)
    if is_main:
        model = _write_run(cfg, partial_dir, final_dir, model, tokenizer, data, info, metrics, history.records, merge, val_ds)
    trainer.accelerator.wait_for_everyone()
    set_requires_grad(model, [])
    return Run(model, tokenizer, data.labels, data.multi_label, info, path=final_dir)


def _run_facts(trainer: Any, controller: Any, layout: Any, best: Any, time_limit: Any, train_seconds: float,
               training_loss: float | None, world_size: int) -> dict[str, Any]:
    """What every task's thawkit.json says about the training itself."""
    model = trainer.model
    return {
        "train_seconds": round(train_seconds, 3),
        "train_loss": training_loss,
        "global_steps": int(trainer.state.global_step),
        "best": best.summary(),
        "stopped_by_time_limit": bool(time_limit and time_limit.stopped),
        # What the last stage reached trains (for gradual: the most that was ever thawed).
        "trainable_params": sum(p.numel() for n, p in model.named_parameters() if n in controller.plan.trainable),
        "total_params": sum(p.numel() for p in model.parameters()),
        "num_layers": layout.num_layers,
        "stages": controller.stage_log,
        "world_size": world_size,
        "peak_memory_mb": _peak_memory_mb(),
    }


def _load_data(cfg: TrainConfig) -> ClassificationData:
    return load_classification_data(
        cfg.data,
        validation=cfg.validation,
        test=cfg.test,
        text_col=cfg.text_col,
        text_pair_col=cfg.text_pair_col,
        label_col=cfg.label_col,
        multi_label=cfg.multi_label,
        label_sep=cfg.label_sep,
        val_fraction=cfg.val_fraction,
        seed=cfg.split_seed if cfg.split_seed is not None else cfg.seed,
    )


def _build_model(cfg: TrainConfig, data: ClassificationData) -> tuple[Any, Any, bool]:
    """The strategy, its model (a strategy may bring its own, e.g. pooled-feature heads), and
    whether the head is fitted in closed form (logistic regression) instead of trained."""
    problem_type = "multi_label_classification" if data.multi_label else "single_label_classification"
    strategy = get_strategy_class(cfg.strategy)(cfg.strategy_config())
    custom_loader = getattr(strategy, "load_model", None)
    model = custom_loader(cfg.model, len(data.labels), data.id2label, problem_type) if custom_loader else None
    if model is None:
        model = load_sequence_classifier(cfg.model, len(data.labels), data.id2label, problem_type)
    _check_max_length(cfg, model)
    fit_logreg = getattr(strategy.config, "head", None) == "logreg"
    if fit_logreg and data.multi_label:
        raise ConfigError("head 'logreg' handles single-label data only; fix: use head 'linear' or 'mlp' for multi-label")
    return strategy, model, fit_logreg


def _pre_training_guards(
    cfg: TrainConfig, tokenizer: Any, model: Any, data: ClassificationData
) -> tuple[GuardReport, list[float] | None]:
    """Learning rate, tokenizer and class-balance guards; the class weights if asked for."""
    guards = GuardReport(strict=cfg.strict)
    guards.add(check_learning_rate(cfg.strategy, cfg.resolved_lr()))
    guards.add(check_tokenizer(tokenizer, model, data.train["text"].tolist()))
    class_counts = {label: 0 for label in data.labels}
    for names in data.train["label_names"]:
        for name in names:
            class_counts[name] += 1
    guards.add(check_imbalance(class_counts, cfg.class_weights, cfg.metric))
    if cfg.class_weights != "auto":
        return guards, None
    counts = [class_counts[label] for label in data.labels]
    if data.multi_label:  # positives of label c are up-weighted by negatives / positives
        return guards, [(len(data.train) - c) / max(c, 1) for c in counts]
    return guards, balanced_class_weights(counts)


def _attach_cache(
    cfg: TrainConfig, controller: Any, tokenizer: Any, train_ds: Any, val_ds: Any, world_size: int
) -> tuple[Any, str]:
    """The frozen-layer cache where it is on, exact and useful; else None and the reason."""
    from thawkit.engine.cache import FeatureStore, resolve_storage
    from thawkit.engine.cached_training import prepare_cached_path

    if not cfg.cache:
        return None, "off (--no-cache)"
    if world_size > 1:
        return None, "off: distributed runs use the plain path"
    storage = resolve_storage(cfg.cache_dtype)
    runtime, reason = prepare_cached_path(
        controller,
        controller.model,
        tokenizer,
        {"train": train_ds, "validation": val_ds},
        cfg.max_length,
        storage,
        FeatureStore(cfg.cache_dir, cfg.cache_ram_budget_mb),
        autocast_bf16=storage == "bfloat16",
        batch_size=cfg.eval_batch_size,
        reachable_stages=_reachable_stages(controller.strategy, cfg, len(train_ds), world_size),
    )
    if runtime is not None:
        controller.listeners.append(runtime.follow)
        controller.full_structure = runtime.surgery.restored
    elif "self-check" in reason:
        log.info("Hint: frozen-layer cache not used: %s", reason)
    return runtime, reason


def _evaluate_splits(trainer: Any, data: ClassificationData, val_ds: Any, tokenizer: Any, cfg: TrainConfig) -> dict[str, Any]:
    """Final metrics on the plain model: validation, and test when given."""
    from thawkit.engine.cached_training import SwitchableDataset
    from thawkit.engine.metrics import detailed_metrics

    metrics: dict[str, Any] = {}
    splits = {"validation": val_ds}
    if data.test is not None:
        splits["test"] = SwitchableDataset(_tokenize(data.test, tokenizer, cfg.max_length))
    for split, dataset in splits.items():
        output = trainer.predict(dataset, metric_key_prefix=split)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        metrics[split] = detailed_metrics(np.asarray(logits), np.asarray(output.label_ids), data.labels, data.multi_label)
        metrics[split]["loss"] = float(output.metrics.get(f"{split}_loss", float("nan")))
    return metrics


def _write_run(
    cfg: TrainConfig, partial_dir: Path, final_dir: Path, model: Any, tokenizer: Any, data: ClassificationData,
    info: dict[str, Any], metrics: dict[str, Any], history: list[dict[str, Any]], merge: bool, val_ds: Any,
) -> Any:
    """Merge LoRA if asked (checked against the adapter model), then write the run. Returns the model as saved."""
    from thawkit.engine.cached_training import SwitchableCollator
    from thawkit.engine.loop import write_run_files

    if merge:
        device = next(model.parameters()).device
        batch = SwitchableCollator(tokenizer)([val_ds[i] for i in range(min(8, len(val_ds)))])
        sample = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        model = _verify_merge(model, model.merge_and_unload, sample)
    labels = {"labels": data.labels, "multi_label": data.multi_label}
    write_run_files(cfg, partial_dir, final_dir, tokenizer, labels, info, metrics, history,
                    lambda folder: model.save_pretrained(str(folder)))
    return model


def _reachable_stages(strategy: Any, cfg: TrainConfig, num_examples: int, world_size: int) -> int:
    """Stages a run of this length gets to: one per epoch, or one per ``every_steps`` steps."""
    steps_per_epoch = math.ceil(num_examples / (cfg.batch_size * cfg.gradient_accumulation_steps * world_size))
    every = strategy.stage_every_steps
    if every:
        return math.ceil(math.ceil(steps_per_epoch * cfg.epochs) / every)
    return math.ceil(cfg.epochs)


def _measure_forgetting(cfg: TrainConfig, model: Any, tokenizer: Any) -> dict[str, Any]:
    from transformers import AutoModel

    from thawkit.advisor.similarity import general_sentences, load_mlm_if_trained
    from thawkit.guards.forgetting import measure_forgetting
    from thawkit.models.backbone import _from_pretrained

    pretrained = _from_pretrained(AutoModel, cfg.model)
    mlm = load_mlm_if_trained(resolve_model_path(cfg.model))
    return measure_forgetting(model, pretrained, tokenizer, general_sentences(), mlm)


def _resolve_auto(cfg: TrainConfig) -> tuple[TrainConfig, Any]:
    """``--strategy auto``: take the advisor's strategy, and its epochs and max length unless given."""
    from thawkit.advisor import advise

    advice = advise(
        cfg.data, model=cfg.model, text_col=cfg.text_col, text_pair_col=cfg.text_pair_col, label_col=cfg.label_col,
        validation=cfg.validation, seed=cfg.seed,
        max_length=cfg.max_length if "max_length" in cfg.model_fields_set else None,
    )
    update: dict[str, Any] = {"strategy": advice.strategy}
    if "epochs" not in cfg.model_fields_set:
        update["epochs"] = advice.epochs
    if "max_length" not in cfg.model_fields_set:
        update["max_length"] = advice.max_length
    log.info("strategy auto -> %s (%s)", advice.strategy, advice.reasons[-1])
    values = {**cfg.model_dump(), **update}
    return make_config(values), advice


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    import resource

    # ru_maxrss is KiB on Linux: the process's peak resident memory.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


__all__ = ["train", "load"]
