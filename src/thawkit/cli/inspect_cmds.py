"""``thawkit evaluate``, ``predict``, ``info`` and ``strategies``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from thawkit.cli.display import console, metrics_table, per_class_table, slice_table
from thawkit.errors import ConfigError


def evaluate(
    run: Path = typer.Argument(..., help="run directory"),
    data: Path = typer.Option(..., "--data", help="labeled file to evaluate on"),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    text_pair_col: Optional[str] = typer.Option(None, "--text-pair-col"),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    slice_cols: Optional[list[str]] = typer.Option(None, "--slice-col", metavar="TEXT",
                                                   help="classification: also score each value of this column (comma-separated or repeated)"),
    as_json: bool = typer.Option(False, "--json", help="print metrics as JSON"),
) -> None:
    """Evaluate a trained run on a labeled file."""
    from thawkit.api import load
    from thawkit.cli.options import list_option

    loaded = load(run)
    columns = list_option(slice_cols, "--slice-col")
    if columns and not getattr(loaded, "slices", False):
        raise ConfigError(f"--slice-col is for classification runs; {run} is a {loaded.info.get('task')} run; fix: drop it")
    metrics = loaded.evaluate(data, text_col=text_col, text_pair_col=text_pair_col, label_col=label_col,
                              **({"slice_cols": columns} if columns else {}))
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    console.print(metrics_table({data.name: metrics}, title=f"evaluation of {run}"))
    console.print(per_class_table(metrics, title="per class"))
    for column, table in (metrics.get("slices") or {}).items():
        console.print(slice_table(column, table))


def predict(
    run: Path = typer.Argument(..., help="run directory"),
    texts: Optional[list[str]] = typer.Argument(None, help="texts to classify"),
    file: Optional[Path] = typer.Option(None, "--file", help="file of texts (.txt one per line, or a table)"),
    pair: Optional[str] = typer.Option(None, "--pair", help="second text, for a pair model"),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    text_pair_col: Optional[str] = typer.Option(None, "--text-pair-col"),
    output: Optional[Path] = typer.Option(None, "--output", help="write predictions as JSONL here"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, max=4096,
                                                 help="generation: tokens to write (default: the run's)"),
    num_beams: Optional[int] = typer.Option(None, "--num-beams", min=1, max=64, help="generation: beam search with N beams"),
    sample: Optional[bool] = typer.Option(None, "--sample/--greedy", help="generation: sample (default: greedy)"),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.01, max=10.0, help="generation: sampling temperature"),
    top_p: Optional[float] = typer.Option(None, "--top-p", min=0.01, max=1.0, help="generation: nucleus sampling share"),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="generation: seed of the sampling"),
    stream: bool = typer.Option(False, "--stream", help="generation: print the answer as it is written"),
) -> None:
    """Predict for texts given as arguments or in a file (a generation run writes the answer to each
    prompt); prints one JSON object per text."""
    from thawkit.paths import check_data_path
    from thawkit.rundir import read_run_files

    read_run_files(run)  # the run first, then its input; both before the heavy imports
    if file is not None:
        check_data_path(file)
    from thawkit.api import load

    if not texts and file is None:
        raise ConfigError("nothing to predict; fix: pass texts as arguments or --file FILE")
    asked = {"--max-new-tokens": max_new_tokens, "--num-beams": num_beams, "--sample": sample, "--temperature": temperature,
             "--top-p": top_p, "--seed": seed, "--stream": stream or None}
    given = {flag: value for flag, value in asked.items() if value is not None}
    if not sample and any(flag in given for flag in ("--temperature", "--top-p", "--seed")):
        raise ConfigError(f"{next(f for f in ('--temperature', '--top-p', '--seed') if f in given)} shapes sampling; fix: add --sample")
    if stream and output is not None:
        raise ConfigError("--stream prints to the terminal; fix: drop --output, or --stream")
    if output is not None and file is not None and output.resolve() == file.resolve():
        raise ConfigError(f"--output {output} is the --file being read: the predictions would replace its texts; fix: write "
                          "them to another file")
    if output is not None and output.resolve().is_relative_to(Path(run).resolve()):
        raise ConfigError(f"--output {output} lies inside the run folder {run}; fix: write the predictions elsewhere")
    loaded = load(run)
    if given and not loaded.generates:
        raise ConfigError(f"{next(iter(given))} is for generation runs; {run} is a {loaded.info.get('task')} run; fix: drop it")
    pairs = None
    if file is not None:
        texts, pairs = loaded.prediction_inputs(file, text_col, text_pair_col)
    elif pair is not None:
        pairs = [pair] * len(texts or [])
    options = {"max_new_tokens": max_new_tokens, "num_beams": num_beams or 1, "do_sample": bool(sample),
               "temperature": temperature or 1.0, "top_p": top_p or 1.0} if loaded.generates else {}
    if seed is not None:
        options["seed"] = seed
    if stream:
        for text in texts or []:
            for piece in loaded.stream(text, **options):  # type: ignore[attr-defined]
                print(piece, end="", flush=True)
            print()
        return
    results = loaded.predict(list(texts or []), pairs, **options)
    lines = [json.dumps({"text": text, **result}, default=float) for text, result in zip(texts or [], results)]
    if output is not None:
        temporary = output.parent / f".{output.name}.tmp"  # a failed write never leaves half a file under the name
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(temporary, output)
        console.print(f"{len(lines)} predictions written to {output}")
    else:
        for line in lines:
            print(line)


def run_format(path: Path, facts: dict) -> str:
    """What the folder holds, in terms of the tool that loads it."""
    if (path / "thawkit_head.json").exists():
        head = json.loads((path / "thawkit_head.json").read_text(encoding="utf-8"))
        return (f"thawkit pooled-feature classifier: backbone/ (AutoModel) + {head['pooling']} pooling + {head['head']} head "
                "(thawkit.load reads it; not an AutoModelForSequenceClassification folder)")
    if (path / "adapter_config.json").exists():
        return "PEFT LoRA adapter over the base model (peft.PeftModel / thawkit.load)"
    if (path / "modules.json").exists():
        return "sentence-transformers model (SentenceTransformer / thawkit.load)"
    return f"Hugging Face model ({facts.get('task')}; transformers Auto classes / thawkit.load)"


def _interrupted(run: Path) -> None:
    """An interrupted run: what it reached and how to continue it."""
    from thawkit.engine.core.resume import complete_checkpoints
    from thawkit.rundir import partial_dir_for

    partial = partial_dir_for(run)
    kept = complete_checkpoints(partial / "checkpoints")
    if kept:
        import json

        state = json.loads((kept[-1] / "trainer_state.json").read_text(encoding="utf-8"))
        console.print(f"{run}: interrupted, not complete. Last checkpoint: step {state.get('global_step')} of "
                      f"{state.get('max_steps')} (epoch {float(state.get('epoch') or 0):.2f}) in {kept[-1]}; "
                      f"continue with: thawkit train --resume {run}")
    else:
        console.print(f"{run}: interrupted before its first checkpoint (nothing to resume: {partial} holds no complete "
                      "checkpoint); train it again with --overwrite")


def info(run: Path = typer.Argument(..., help="run directory"),
         as_json: bool = typer.Option(False, "--json", help="print the facts and metrics as one JSON object")) -> None:
    """Show what a run is: task, strategy, head, data, metrics, trainable parameters and time per phase."""
    from thawkit.rundir import partial_dir_for, read_run_files

    if not (Path(run) / "thawkit.json").exists() and partial_dir_for(Path(run)).is_dir():
        _interrupted(Path(run))
        return
    path, facts, labels = read_run_files(run)
    table = Table(title=f"run {path}", show_header=False)
    table.add_column("key")
    table.add_column("value")
    share = 100.0 * facts.get("trainable_params", 0) / max(facts.get("total_params", 1), 1)
    learning_rate = facts.get("learning_rate")
    rows = {
        "task": facts.get("task"),
        "strategy": f"{facts.get('strategy')} {facts.get('strategy_options')}",
        "head fit": facts.get("head_fit", "gradient descent"),
        "base model": facts.get("base_model"),
        "labels": ", ".join(labels["labels"]) + (" (multi-label)" if labels["multi_label"] else "") if labels["labels"] else "–",
        "train examples": facts.get("num_train_examples"),
        "validation": f"{facts.get('num_validation_examples')} from {facts.get('validation_source')}",
        "selection metric": facts.get("metric") or facts.get("config", {}).get("metric"),
        "learning rate": "n/a (closed-form fit)" if learning_rate is None else learning_rate,
        "trainable params": f"{facts.get('trainable_params', 0):,} of {facts.get('total_params', 0):,} ({share:.2f}%)",
        "train time": f"{facts.get('train_seconds', 0):.1f}s, {facts.get('global_steps')} steps",
        "cache": "used" if (facts.get("cache") or {}).get("used") else f"not used: {(facts.get('cache') or {}).get('reason')}",
        "format": run_format(path, facts),
    }
    calibration = facts.get("calibration")
    if calibration:
        rows["calibration"] = (f"temperature {calibration['temperature']} (fitted on {calibration['fitted_on']})"
                               if calibration.get("applied") else f"none: {calibration.get('reason')}")
    config = facts.get("config", {})
    if config.get("long_text") == "window":
        rows["long texts"] = f"windows of {config.get('max_length')} tokens, overlap {config.get('window_overlap')}, " \
                             f"{config.get('window_pooling')} pooling"
    if facts.get("timings"):
        rows["time per phase"] = ", ".join(f"{k} {v:.1f}s" for k, v in facts["timings"].items())
    metrics_path = path / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else None
    if as_json:  # the run's own records, not the table's rendering of them
        print(json.dumps({"run": str(path), "format": rows["format"], "labels": labels, "metrics": metrics, "facts": facts},
                         indent=2, default=str))
        return
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)
    if metrics is not None:
        console.print(metrics_table(metrics))


def strategies(as_json: bool = typer.Option(False, "--json", help="print the strategies as a JSON list")) -> None:
    """List the registered strategies with their default learning rates and options."""
    from thawkit.strategies import get_strategy_class, strategies_in_display_order

    if as_json:
        print(json.dumps([{"name": name, "default_lr": get_strategy_class(name).default_lr,
                           "options": {option: {"flag": (field.json_schema_extra or {}).get("flag") if isinstance(field.json_schema_extra, dict) else None,
                                                "default": field.default, "description": field.description}
                                       for option, field in get_strategy_class(name).Config.model_fields.items()},
                           "description": (get_strategy_class(name).__doc__ or "").strip().splitlines()[0]}
                          for name in strategies_in_display_order()], indent=2, default=str))
        return

    table = Table(title="strategies")
    for column in ("name", "default lr", "options", "what it does"):
        table.add_column(column)
    for name in strategies_in_display_order():
        cls = get_strategy_class(name)
        options = ", ".join(cls.Config.model_fields) or "-"
        table.add_row(name, f"{cls.default_lr:g}", options, (cls.__doc__ or "").strip().splitlines()[0])
    console.print(table)
