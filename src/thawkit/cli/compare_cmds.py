"""``thawkit compare`` and ``thawkit report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from thawkit.cli.display import console


def results_table(rows: list[dict], metric: str, title: str) -> Table:
    table = Table(title=title)
    for column in ("strategy", f"val {metric}", f"test {metric}", "trainable", "time", "memory", "drift", ""):
        table.add_column(column, justify="left" if column in ("strategy", "") else "right")
    for row in rows:
        std = row[f"validation_{metric}_std"] or 0.0
        test = row[f"test_{metric}_mean"]
        table.add_row(
            row["strategy"],
            f"{row[f'validation_{metric}_mean']:.3f} ± {std:.3f}",
            "–" if test is None else f"{test:.3f} ± {row[f'test_{metric}_std'] or 0:.3f}",
            f"{row['trainable_percent']:.2f}%",
            f"{row['train_seconds_mean']:.1f}s",
            f"{row['peak_memory_mb']:.0f} MB",
            "–" if row["forgetting_drift"] is None else f"{row['forgetting_drift']:.4f}",
            "" if row.get("eliminated_at_rung") is None else f"dropped at rung {row['eliminated_at_rung']}",
        )
    return table


def compare(
    data: Path = typer.Option(..., "--data", help="labeled training file"),
    validation: Optional[Path] = typer.Option(None, "--validation"),
    test: Optional[Path] = typer.Option(None, "--test"),
    task: str = typer.Option("classification", "--task", help="task (classification)"),
    model: str = typer.Option("minilm-l6", "--model"),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    text_pair_col: Optional[str] = typer.Option(None, "--text-pair-col"),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    strategies: str = typer.Option("all", "--strategies", help="comma-separated names, or all"),
    seeds: int = typer.Option(1, "--seeds", help="seeds per strategy"),
    seed: int = typer.Option(42, "--seed", help="base seed (also the split's)"),
    epochs: float = typer.Option(3, "--epochs"),
    batch_size: int = typer.Option(16, "--batch-size"),
    max_length: int = typer.Option(128, "--max-length"),
    metric: str = typer.Option("macro_f1", "--metric"),
    budget: Optional[str] = typer.Option(None, "--budget", help="total time budget, e.g. 20m"),
    successive_halving: bool = typer.Option(False, "--successive-halving", help="drop losing strategies early"),
    workers: int = typer.Option(1, "--workers", help="parallel training processes"),
    ray: bool = typer.Option(False, "--ray", help="run jobs through Ray (the [ray] extra)"),
    out: Optional[Path] = typer.Option(None, "--out", help="comparison directory"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Train several strategies on identical splits and seeds; write results and a report."""
    from thawkit.compare import compare as run_compare
    from thawkit.errors import ConfigError

    if task != "classification":
        raise ConfigError(f"--task {task!r} is not supported by compare yet; fix: use --task classification")
    comparison = run_compare(
        data=data, validation=validation, test=test, model=model, text_col=text_col, text_pair_col=text_pair_col,
        label_col=label_col, strategies=[s.strip() for s in strategies.split(",") if s.strip()], seeds=seeds, seed=seed,
        epochs=epochs, batch_size=batch_size, max_length=max_length, metric=metric, budget=budget,
        successive_halving=successive_halving, workers=workers, ray=ray, out=out, overwrite=overwrite,
    )
    _print(comparison.rows, comparison.winner, comparison.advice, metric, comparison.path)


def _print(rows: list[dict], winner: dict, advice: dict | None, metric: str, path: Path) -> None:
    console.print(results_table(rows, metric, title="strategies compared"))
    console.print(f"[bold]best[/bold]: {winner['reason']}")
    if advice:
        console.print(f"advisor (before training): {advice['strategy']}")
    console.print(f"report: [bold]{path / 'report.html'}[/bold] (and report.md, results.csv, results.json)")


def report(
    runs: list[Path] = typer.Argument(..., help="run directories"),
    out: Path = typer.Option(Path("runs/report"), "--out", help="folder for report.html and report.md"),
    metric: str = typer.Option("macro_f1", "--metric"),
) -> None:
    """Build the comparison report from existing run directories."""
    from thawkit.compare.report import report_from_runs

    page = report_from_runs(runs, out, metric)
    console.print(f"report: [bold]{page}[/bold]")
