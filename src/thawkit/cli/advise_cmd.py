"""``thawkit advise``: a strategy recommendation with its reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from thawkit.cli.display import console


def advise(
    data: Path = typer.Option(..., "--data", help="labeled training file"),
    task: Optional[str] = typer.Option(None, "--task", help="task: classification (the default), ner, qa, similarity or generation"),
    validation: Optional[Path] = typer.Option(None, "--validation", help="validation file (default: a seeded split of --data)"),
    model: str = typer.Option("minilm-l6", "--model", help="backbone: hub id, folder or alias"),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    text_pair_col: Optional[str] = typer.Option(None, "--text-pair-col"),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    budget: Optional[str] = typer.Option(None, "--budget", help="time budget, e.g. 30m or 2h"),
    memory: Optional[str] = typer.Option(None, "--memory", help="memory available, e.g. 16GB"),
    gpu: bool = typer.Option(False, "--gpu/--cpu", help="plan for a GPU (memory means GPU memory)"),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=8, max=32768, help="default: from the text lengths"),
    unlabeled: Optional[Path] = typer.Option(None, "--unlabeled", help="unlabeled in-domain text (one per line): "
                                             "should domain-adaptive pretraining on it come first?"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Recommend a strategy, learning rate, epochs, batch size and max length for your data, and say why."""
    from thawkit.paths import check_data_path

    for given in (data, validation, unlabeled):  # before the heavy imports
        if given is not None:
            check_data_path(given)
    from thawkit.advisor import advise as run_advisor
    from thawkit.errors import ConfigError

    from thawkit.tasks import available_tasks

    if task is not None and task not in available_tasks():
        raise ConfigError(f"--task {task!r} is not a task; fix: use one of {', '.join(available_tasks())}")
    advice = run_advisor(
        data, model=model, validation=validation, text_col=text_col, text_pair_col=text_pair_col, label_col=label_col,
        budget=budget, memory=memory, gpu=gpu, max_length=max_length, unlabeled=unlabeled, task=task,
    )
    if as_json:
        print(json.dumps(advice.as_dict(), indent=2, default=str))
        return
    table = Table(title=f"recommendation for {data.name}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = {
        "strategy": advice.strategy,
        "learning rate": f"{advice.learning_rate:g}",
        "epochs": str(advice.epochs),
        "batch size": str(advice.batch_size),
        "max length": f"{advice.max_length} ({advice.profile.truncated_share:.1%} of texts truncated)",
        "expected time": f"{advice.expected_seconds / 60:.1f} min on this machine",
        "expected memory": f"{advice.expected_memory_gb:.1f} GB",
        "domain similarity": f"{advice.domain.score:.2f} " + str(advice.domain.parts),
        **({"class balance": ", ".join(f"{k} {v}" for k, v in advice.profile.class_counts.items())}
           if advice.profile.class_counts else {}),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
    console.print("[bold]why[/bold]")
    for reason in advice.reasons:
        console.print(f"  • {reason}")
    for warning in advice.warnings:
        console.print(f"  [yellow]warning[/yellow]: {warning}")
    for suggestion in advice.suggestions:
        console.print(f"  [cyan]consider[/cyan]: {suggestion}")
    if advice.dapt is not None:
        verdict = "[green]recommended[/green]" if advice.dapt["recommended"] else "not recommended"
        console.print(f"  domain-adaptive pretraining on {unlabeled}: {verdict}: {advice.dapt['reason']}")
    task_flag = f" --task {task}" if task else ""
    command = f"thawkit train{task_flag} --data {data} --strategy {advice.strategy} --epochs {advice.epochs} --max-length {advice.max_length}"
    if advice.dapt is not None and advice.dapt["recommended"]:
        command += f" --dapt-text {unlabeled}"
    console.print(f"\nto train: [bold]{command}[/bold]")
