"""Rich tables shared by the commands."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def metrics_table(metrics: dict[str, dict[str, Any]], title: str = "metrics") -> Table:
    table = Table(title=title)
    table.add_column("split")
    names = ["accuracy", "macro_f1", "weighted_f1", "micro_f1", "ece", "brier", "loss", "num_examples"]
    shown = [n for n in names if any(isinstance(split, dict) and n in split for split in metrics.values())]
    for name in shown:
        table.add_column(name, justify="right")
    for split, values in metrics.items():
        if not isinstance(values, dict) or "accuracy" not in values:
            continue  # e.g. the forgetting meter's block
        cells = []
        for name in shown:
            value = values.get(name)
            cells.append("" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
        table.add_row(split, *cells)
    return table


def per_class_table(split_metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, values in split_metrics.get("per_class", {}).items():
        table.add_row(
            label, f"{values['precision']:.3f}", f"{values['recall']:.3f}", f"{values['f1']:.3f}", str(values["support"])
        )
    return table


def slice_table(column: str, slices: dict[str, Any]) -> Table:
    """Per-slice scores of one --slice-col column; the worst slice marked."""
    table = Table(title=f"per {column} (worst: {slices.get('worst')}, gap {slices.get('gap') or 0:.3f} accuracy)")
    for name in (column, "examples", "accuracy", "macro_f1"):
        table.add_column(name, justify="left" if name == column else "right")
    for value, scores in slices["values"].items():
        mark = " (worst)" if value == slices.get("worst") else ""
        table.add_row(f"{value}{mark}", str(scores["examples"]), f"{scores['accuracy']:.3f}", f"{scores['macro_f1']:.3f}")
    return table
