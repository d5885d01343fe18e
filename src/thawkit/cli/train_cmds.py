"""``thawkit train`` and ``thawkit demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from thawkit.cli.display import console, metrics_table, per_class_table
from thawkit.errors import ConfigError

# CLI flag -> (strategy option name, strategies that take it)
STRATEGY_FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "freeze_layers": ("freeze_layers", ("partial",)),
    "unfreeze_every": ("every_steps", ("gradual", "llrd")),
    "layer_decay": ("decay", ("llrd",)),
    "head_lr_mult": ("head_lr_mult", ("llrd",)),
    "gradual": ("gradual", ("llrd",)),
    "lora_r": ("r", ("lora",)),
    "lora_alpha": ("alpha", ("lora",)),
    "lora_dropout": ("dropout", ("lora",)),
    "merge_lora": ("merge", ("lora",)),
}


def _strategy_options(strategy: str, flags: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is None:
            continue
        option, takers = STRATEGY_FLAGS[flag]
        if strategy not in takers:
            raise ConfigError(
                f"--{flag.replace('_', '-')} does not apply to strategy {strategy!r}; "
                f"fix: drop it or use --strategy {'/'.join(takers)}"
            )
        options[option] = value
    return options


def train(
    task: Optional[str] = typer.Option(None, "--task", help="classification (default), ner, qa or similarity"),
    data: Optional[Path] = typer.Option(None, "--data", help="training file (.csv/.tsv/.jsonl/.parquet) or dataset folder"),
    validation: Optional[Path] = typer.Option(None, "--validation", help="validation file (default: stratified split of --data)"),
    test: Optional[Path] = typer.Option(None, "--test", help="test file, evaluated once at the end"),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="text column (default: text, sentence, ...)"),
    text_pair_col: Optional[str] = typer.Option(None, "--text-pair-col", help="second text column for pairs"),
    label_col: Optional[str] = typer.Option(None, "--label-col", help="label column (default: label, ...)"),
    multi_label: Optional[bool] = typer.Option(None, "--multi-label/--single-label", help="default: detected"),
    label_sep: Optional[str] = typer.Option(None, "--label-sep", help="separator in multi-label cells (default ',')"),
    model: Optional[str] = typer.Option(None, "--model", help="hub id, local folder or alias (default minilm-l6)"),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="full, frozen, partial, gradual, llrd, lora, or auto"),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="training epochs (default 3)"),
    lr: Optional[float] = typer.Option(None, "--lr", help="base learning rate (default: per strategy)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="per-device batch size (default 16)"),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="max tokens per example (default 128)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed (default 42)"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<strategy>-<time>)"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config; flags override it"),
    overwrite: Optional[bool] = typer.Option(None, "--overwrite", help="replace an existing run directory"),
    early_stopping_patience: Optional[int] = typer.Option(None, "--patience", help="evaluations without gain before stopping (0: off)"),
    metric: Optional[str] = typer.Option(None, "--metric", help="model-selection metric: macro_f1, accuracy, ..."),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio", help="warmup share of steps (default 0.1)"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW weight decay (default 0.01)"),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="tokenizer (default: the model's own)"),
    class_weights: Optional[str] = typer.Option(None, "--class-weights", help="none or auto (inverse class frequency)"),
    strict: Optional[bool] = typer.Option(None, "--strict", help="turn guard warnings into errors"),
    measure_forgetting: Optional[bool] = typer.Option(None, "--forgetting/--no-forgetting", help="measure drift after training"),
    cache: Optional[bool] = typer.Option(None, "--cache/--no-cache", help="cache frozen-layer outputs (default on)"),
    cache_dtype: Optional[str] = typer.Option(None, "--cache-dtype", help="auto (bf16 where fast), float32 (exact), bfloat16 or float16"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="feature cache folder"),
    freeze_layers: Optional[int] = typer.Option(None, "--freeze-layers", help="partial: layers frozen from the bottom"),
    unfreeze_every: Optional[int] = typer.Option(None, "--unfreeze-every", help="gradual: steps per stage (default: epoch)"),
    layer_decay: Optional[float] = typer.Option(None, "--layer-decay", help="llrd: LR factor per layer down (default 0.9)"),
    head_lr_mult: Optional[float] = typer.Option(None, "--head-lr-mult", help="llrd: head LR multiplier"),
    gradual: Optional[bool] = typer.Option(None, "--gradual", help="llrd: also unfreeze gradually"),
    lora_r: Optional[int] = typer.Option(None, "--lora-r", help="lora: rank (default 8)"),
    lora_alpha: Optional[int] = typer.Option(None, "--lora-alpha", help="lora: alpha (default 16)"),
    lora_dropout: Optional[float] = typer.Option(None, "--lora-dropout", help="lora: dropout (default 0.1)"),
    merge_lora: Optional[bool] = typer.Option(None, "--merge-lora", help="lora: merge the adapter at save time"),
) -> None:
    """Fine-tune a classifier on your data with one strategy and write a run directory."""
    from thawkit.api import train as train_run
    from thawkit.config import load_yaml_config

    values: dict[str, Any] = load_yaml_config(config) if config is not None else {}
    flags = dict(
        task=task, data=data, validation=validation, test=test, text_col=text_col, text_pair_col=text_pair_col,
        label_col=label_col, multi_label=multi_label, label_sep=label_sep, model=model, strategy=strategy,
        epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, seed=seed, out=out,
        overwrite=overwrite, early_stopping_patience=early_stopping_patience, metric=metric,
        warmup_ratio=warmup_ratio, weight_decay=weight_decay, cache=cache, cache_dtype=cache_dtype,
        cache_dir=cache_dir, tokenizer=tokenizer, class_weights=class_weights, strict=strict,
        measure_forgetting=measure_forgetting,
    )
    values.update({k: v for k, v in flags.items() if v is not None})
    if values.get("data") is None:
        raise ConfigError("no training data; fix: pass --data FILE or set data: in the --config file")
    strategy_flags = dict(
        freeze_layers=freeze_layers, unfreeze_every=unfreeze_every, layer_decay=layer_decay,
        head_lr_mult=head_lr_mult, gradual=gradual, lora_r=lora_r, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, merge_lora=merge_lora,
    )
    options = dict(values.get("strategy_options") or {})
    options.update(_strategy_options(values.get("strategy", "full"), strategy_flags))
    values["strategy_options"] = options
    run = train_run(values)
    _summary(run)


def _summary(run: Any) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    info = run.info
    if info.get("task") == "question-answering":
        validation = run.metrics["validation"]
        baseline = validation["first_sentence_baseline"]
        console.print(f"[bold]qa[/bold] {info['strategy']}: validation EM {validation['exact_match']:.1f}, F1 {validation['f1']:.1f} "
                      f"(first-sentence baseline F1 {baseline['f1']:.1f}) on {validation['num_questions']} questions")
        console.print(f"run saved to [bold]{run.path}[/bold]")
        return
    if info.get("task") == "sentence-similarity":
        validation = run.metrics["validation"]
        console.print(f"[bold]similarity[/bold] {info['strategy']} ({info['pair_kind']} pairs): validation "
                      + ", ".join(f"{k} {v:.4f}" for k, v in validation.items() if isinstance(v, float)))
        console.print(f"run saved to [bold]{run.path}[/bold] (also loads with sentence_transformers.SentenceTransformer)")
        return
    if info.get("task") == "token-classification":
        validation = run.metrics["validation"]
        console.print(f"[bold]ner[/bold] {info['strategy']}: validation entity F1 {validation['f1']:.4f} "
                      f"(P {validation['precision']:.3f}, R {validation['recall']:.3f})")
        for name, values in validation["per_type"].items():
            console.print(f"  {name:8s} F1 {values['f1']:.3f}  support {values['support']}")
        console.print(f"run saved to [bold]{run.path}[/bold]")
        return
    console.print(metrics_table(run.metrics, title=f"{info['strategy']} on {info['base_model']}"))
    console.print(per_class_table(run.metrics["validation"], title="validation per class"))
    share = 100.0 * info["trainable_params"] / max(info["total_params"], 1)
    console.print(
        f"trainable params {info['trainable_params']:,} of {info['total_params']:,} ({share:.2f}%) · "
        f"train time {info['train_seconds']:.1f}s · peak memory {info['peak_memory_mb']:.0f} MB"
    )
    forgetting = run.metrics.get("forgetting")
    if forgetting:
        console.print(f"forgetting: mean CKA to the pretrained encoder {forgetting['mean_cka']:.3f} (min {forgetting['min_cka']:.3f})")
    for finding in info.get("guards", []):
        console.print(f"[yellow]warning[/yellow] {finding['guard']}: {finding['message']}; fix: {finding['fix']}")
    console.print(f"run saved to [bold]{run.path}[/bold]")


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="comparison directory"),
    budget: str = typer.Option("5m", "--budget", help="time budget shared by the strategies"),
) -> None:
    """Compare every strategy on the built-in demo dataset with the embedded MiniLM-L6 (no arguments needed)."""
    from thawkit.cli.compare_cmds import _print
    from thawkit.compare import compare
    from thawkit.demo import demo_data_path

    console.print(
        f"[bold]thawkit demo[/bold]: every strategy on the embedded MiniLM-L6, {demo_data_path().name} "
        f"(300 support-ticket messages, 5 intents), budget {budget}"
    )
    comparison = compare(data=demo_data_path(), epochs=4, max_length=64, budget=budget, out=out, overwrite=True)
    _print(comparison.rows, comparison.winner, comparison.advice, "macro_f1", comparison.path)
    from thawkit.api import load

    best_run = next(r for r in comparison.rows if r["strategy"] == comparison.winner["strategy"])["runs"][0]
    example = "I was charged twice for my subscription this month"
    prediction = load(best_run).predict([example])[0]
    console.print(f"predict({example!r}) with {comparison.winner['strategy']} -> {prediction['label']} ({prediction['score']:.2f})")
