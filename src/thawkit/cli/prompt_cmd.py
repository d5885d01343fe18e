"""``thawkit prompt``: a decoder prompted as a classifier (zero or k shots), the no-training baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from thawkit.cli.display import console


def prompt(
    data: Path = typer.Option(..., "--data", help="labelled examples: the label set, and where demonstrations come from"),
    validation: Optional[Path] = typer.Option(None, "--validation", help="labelled file to score"),
    test: Optional[Path] = typer.Option(None, "--test", help="labelled file to score (with neither, a 10% split of --data)"),
    model: Optional[str] = typer.Option(None, "--model", help="a decoder: alias, local folder or hub id (default: smollm2-135m)"),
    shots: int = typer.Option(0, "--shots", help="demonstrations per class in the prompt (0: zero-shot)"),
    instruction: Optional[str] = typer.Option(None, "--instruction",
                                              help="the instruction ({labels} becomes the label names); default: "
                                                   "'Classify the text. Answer with one of: {labels}.'"),
    label_names: Optional[str] = typer.Option(None, "--label-names",
                                              help="words for the label values in their sorted order (0,1 -> negative,positive): "
                                                   "the model reads and scores these"),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="text column (default: guessed)"),
    label_col: Optional[str] = typer.Option(None, "--label-col", help="label column (default: guessed)"),
    max_length: int = typer.Option(128, "--max-length", min=8, help="tokens kept of each text (demonstrations too)"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="texts scored per forward pass"),
    calibration: str = typer.Option("content-free", "--calibration",
                                    help="content-free: divide out the labels' lean on empty texts (Zhao et al. 2021); none"),
    seed: int = typer.Option(42, "--seed", help="which demonstrations are drawn (and the validation split)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for prompt.json, prompt.txt and predictions-SPLIT.csv"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable report"),
) -> None:
    """Prompt a decoder to classify, no training: each label name scored by its log-likelihood after
    the instruction, --shots demonstrations per class and the text. The baseline a trained run has to beat."""
    from thawkit.errors import ConfigError
    from thawkit.paths import check_data_path

    for path, flag in ((data, "--data"), (validation, "--validation"), (test, "--test")):
        if path is not None:
            check_data_path(path, f"pass an existing file as {flag}")
    names = [n.strip() for n in label_names.split(",")] if label_names else None
    if names is not None and not all(names):
        raise ConfigError(f"--label-names {label_names!r}: an empty name; fix: one word per label, comma-separated")
    from thawkit.engine.programs.prompting import write_report
    from thawkit.rundir import check_destination

    if out is not None:
        check_destination(out, overwrite)  # before the model is loaded and every text scored
    from thawkit.api import prompt as prompt_api

    report = prompt_api(data, validation, test, model=model, shots=shots, instruction=instruction, text_col=text_col,
                        label_col=label_col, label_names=names, max_length=max_length, batch_size=batch_size, seed=seed,
                        calibration=calibration)
    if out is not None:
        write_report(report, out, overwrite)
    if as_json:
        print(json.dumps({**report.as_dict(), "out": str(out) if out is not None else None}, indent=2, default=str))
        return
    table = Table(title=f"{report.model} prompted, {shots} shot{'s' if shots != 1 else ''} per class ({report.demonstrations} "
                        f"demonstrations), no training")
    uncalibrated = report.calibration["method"] != "none"
    for column in ("split", "n", "accuracy", "macro F1", *(("uncalibrated accuracy",) if uncalibrated else ())):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, scores in report.metrics.items():
        table.add_row(split, f"{scores['num_examples']:,}", f"{scores['accuracy']:.3f}", f"{scores['macro_f1']:.3f}",
                      *((f"{scores['uncalibrated']['accuracy']:.3f}",) if uncalibrated else ()))
    console.print(table)
    predicted = {split: frame["predicted"].value_counts(normalize=True) for split, frame in report.predictions.items()}
    for split, shares in predicted.items():
        console.print(f"{split} predictions: " + ", ".join(f"{label} {shares.get(label, 0.0):.0%}" for label in report.labels))
    if uncalibrated:
        lean = ", ".join(f"{label} {share:.0%}" for label, share in report.calibration["content_free_share"].items())
        console.print(f"calibrated: on empty texts the prompt gives {lean}; divided out")
    console.print(f"prompt: {report.prompt_format}, {report.prompt_tokens} tokens before each text; "
                  f"{report.seconds['total']:.1f} s ({report.seconds['scoring']:.1f} s scoring), peak memory "
                  f"{report.peak_memory_mb:,.0f} MB")
    if out is not None:
        console.print(f"written to [bold]{out}[/bold] (prompt.txt shows what the model read)")
