"""``thawkit demo``: compare every strategy on the built-in data, no arguments needed."""

from __future__ import annotations

from pathlib import Path

import typer

from thawkit.cli.compare_cmds import print_comparison
from thawkit.cli.display import console


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="comparison directory"),
    budget: str = typer.Option("5m", "--budget", help="time budget shared by the strategies"),
) -> None:
    """Compare every strategy on the built-in demo dataset with the embedded MiniLM-L6 (no arguments needed)."""
    from thawkit.compare import compare
    from thawkit.demo import demo_data_path

    console.print(
        f"[bold]thawkit demo[/bold]: every strategy on the embedded MiniLM-L6, {demo_data_path().name} "
        f"(300 support-ticket messages, 5 intents), budget {budget}"
    )
    comparison = compare(data=demo_data_path(), epochs=4, max_length=64, budget=budget, out=out, overwrite=True)
    print_comparison(comparison.rows, comparison.winner, comparison.advice, comparison.metric, comparison.path)
    from thawkit.api import load

    best_run = next(r for r in comparison.rows if r["name"] == comparison.winner["name"])["runs"][0]
    example = "I was charged twice for my subscription this month"
    prediction = load(best_run).predict([example])[0]
    console.print(f"predict({example!r}) with {comparison.winner['strategy']} -> {prediction['label']} ({prediction['score']:.2f})")
