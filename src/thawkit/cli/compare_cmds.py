"""``thawkit compare`` and ``thawkit report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from thawkit.cli.display import console
from thawkit.cli.options import CONFIG_FILE, command, config_parameters, config_values, strategy_parameters, strategy_values
from thawkit.config import flag_of
from thawkit.errors import ConfigError


def results_table(rows: list[dict], metric: str, title: str) -> Table:
    """Fits 80 columns: the selection metric per split, cost columns, and a labelled status column
    only when successive halving dropped someone. Every metric is in results.csv and report.md."""
    dropped = any(row.get("eliminated_at_rung") is not None or row.get("failed_reason") for row in rows)
    has_test = any(row.get(f"test_{metric}_mean") is not None for row in rows)
    multi = len({row.get("model") for row in rows}) > 1
    columns = ["model · strategy" if multi else "strategy", f"val {metric}", *([f"test {metric}"] if has_test else []), "trained", "time", "memory", "drift",
               *(["status"] if dropped else [])]
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("strategy", "model · strategy", "status") else "right", overflow="fold")
    for row in rows:
        cells = [row.get("name", row["strategy"]), _mean_std(row, f"validation_{metric}")]
        if has_test:
            cells.append(_mean_std(row, f"test_{metric}"))
        cells += [
            f"{row['trainable_percent']:.2f}%",
            f"{row['train_seconds_mean']:.1f}s",
            f"{row['peak_memory_mb']:.0f}MB",
            "–" if row["forgetting_drift"] is None else f"{row['forgetting_drift']:.3f}",
        ]
        if dropped:
            cells.append("stopped by a guard" if row.get("failed_reason") else
                         "" if row.get("eliminated_at_rung") is None else f"out at rung {row['eliminated_at_rung']}")
        table.add_row(*cells)
    return table


def _mean_std(row: dict, key: str) -> str:
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None:
        return "–"
    return f"{mean:.3f}±{std or 0:.3f}" if row.get("seeds", 1) > 1 else f"{mean:.3f}"


def _compare(config: Optional[Path] = None, **given: Any) -> None:
    """Train several strategies on identical splits and seeds (every train option applies); write results and a report."""
    from thawkit.compare import compare as run_compare
    from thawkit.config import CompareConfig, load_yaml_config
    from thawkit.strategies import available_strategies

    values: dict[str, Any] = load_yaml_config(config, CompareConfig) if config is not None else {}
    sources = {name: f"config file {config}" for name in values}
    flags = config_values(CompareConfig, given)
    values.update(flags)
    sources.update({name: f"command line ({flag_of(name)})" for name in flags})
    if values.get("data") is None and values.get("resume") is None:
        raise ConfigError("no training data; fix: pass --data FILE or set data: in the --config file")
    names = values.get("strategies") or ["all"]
    names = available_strategies() if names == ["all"] else names
    options = {k: dict(v) for k, v in (values.get("strategy_options") or {}).items()}
    for strategy, chosen in strategy_values(given, names).items():
        options.setdefault(strategy, {}).update(chosen)
    values["strategy_options"] = options
    comparison = run_compare(values, sources=sources)
    print_comparison(comparison.rows, comparison.winner, comparison.advice, comparison.metric, comparison.path,
                     comparison.models_advice)


def _build_compare() -> Any:
    from thawkit.config import CompareConfig

    return command(_compare, [CONFIG_FILE], config_parameters(CompareConfig, command="compare"), strategy_parameters())


compare = _build_compare()


def print_comparison(rows: list[dict], winner: dict, advice: dict | None, metric: str, path: Path,
                     models_advice: dict | None = None) -> None:
    several = len({row.get("model") for row in rows}) > 1
    console.print(results_table(rows, metric, title="models x strategies compared" if several else "strategies compared"))
    console.print(f"[bold]best[/bold]: {winner['reason']}")
    if models_advice:
        console.print(f"[bold]model size[/bold] ({models_advice['verdict']}): {models_advice['reason']}")
    if advice:
        console.print(f"advisor (before training): {advice['strategy']}")
    console.print(f"report: [bold]{path / 'report.html'}[/bold] (and report.md, results.csv, results.json)")


def report(
    runs: list[Path] = typer.Argument(..., help="run directories"),
    out: Path = typer.Option(Path("runs/report"), "--out", help="folder for report.html and report.md"),
    metric: Optional[str] = typer.Option(None, "--metric", help="metric to rank by (default: the one that selected the runs' best epochs)"),
) -> None:
    """Build the comparison report from existing run directories."""
    from thawkit.compare.report import report_from_runs

    page = report_from_runs(runs, out, metric)
    console.print(f"report: [bold]{page}[/bold]")
