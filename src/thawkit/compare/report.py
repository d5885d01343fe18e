"""The comparison report: ``report.html`` (self-contained, plotly's JavaScript inline, opens offline)
and ``report.md`` (for terminals and pull requests)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

def _color(strategy: str) -> str:
    """The strategy's own colour (a fact of its class); grey for a name no longer registered."""
    from thawkit.strategies import registered_strategies

    cls = registered_strategies().get(strategy)
    return cls.color if cls is not None else "#7f7f7f"


def _adapters(strategy: str) -> bool:
    from thawkit.strategies import registered_strategies

    cls = registered_strategies().get(strategy)
    return bool(cls is not None and cls.adapts_with_adapters)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _blocks(summary: dict[str, Any]) -> list[str]:
    layers = summary["info"].get("num_layers")
    if layers is None:
        seen = {b for h in summary["history"] for b in h.get("trainable_blocks", []) if b.startswith("layer.")}
        layers = 1 + max((int(b.split(".")[1]) for b in seen), default=-1)
    return ["embeddings", *(f"layer.{i}" for i in range(layers)), "head"]


def figures(summaries: list[dict[str, Any]], rows: list[dict[str, Any]], metric: str) -> list[tuple[str, Any]]:
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        from thawkit.errors import ConfigError

        raise ConfigError("the report needs plotly; fix: pip install 'thawkit[report]'") from None

    from thawkit.compare.results import label_summaries

    if any("name" not in s for s in summaries):
        label_summaries(summaries)
    evals = {id(s): [h for h in s["history"] if "type" not in h] for s in summaries}
    # Colour: the strategy; line style: the model (when several are compared).
    dashes = {m: d for m, d in zip(dict.fromkeys(s.get("model") for s in summaries), ("solid", "dash", "dot", "dashdot", "longdash"))}
    shown: set[str] = set()
    curve_time, curve_epoch = go.Figure(), go.Figure()
    for summary in summaries:
        strategy, name = summary["info"]["strategy"], summary["name"]
        points = evals[id(summary)]
        offset = (summary["info"].get("cache") or {}).get("pass_seconds", 0.0)
        values = [h["validation"].get(metric) for h in points]
        common = dict(mode="lines+markers", line=dict(color=_color(strategy), dash=dashes.get(summary.get("model"), "solid")),
                      legendgroup=name, name=name, showlegend=name not in shown)
        curve_time.add_trace(go.Scatter(x=[offset + h.get("elapsed_seconds", 0.0) for h in points], y=values, **common))
        curve_epoch.add_trace(go.Scatter(x=[h["epoch"] for h in points], y=values, **common))
        losses = _loss_points(points)  # the training loss every --logging-steps: a curve even for one epoch
        if losses:
            curve_epoch.add_trace(go.Scatter(x=[x for x, _ in losses], y=[y for _, y in losses], mode="lines", yaxis="y2",
                                             line=dict(color=_color(strategy), dash="dot", width=1), legendgroup=name,
                                             name=f"{name} training loss", showlegend=False, opacity=0.6))
        shown.add(name)
    curve_time.update_layout(title=f"validation {metric} against training time", xaxis_title="seconds (incl. cached pass)", yaxis_title=metric)
    curve_epoch.update_layout(title=f"validation {metric} (markers) and training loss (dotted) against epoch", xaxis_title="epoch",
                              yaxis_title=metric, yaxis2=dict(title="training loss", overlaying="y", side="right", showgrid=False))

    first_seed = {}
    for summary in summaries:
        first_seed.setdefault(summary["name"], summary)
    names = list(first_seed)
    trainability = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=len({s.get("model") for s in summaries}) == 1,
                                 horizontal_spacing=0.03)
    for col, name in enumerate(names, start=1):
        summary = first_seed[name]
        blocks = _blocks(summary)
        points = evals[id(summary)] or [{"epoch": 0, "trainable_blocks": []}]
        adapters = _adapters(summary["info"]["strategy"])
        z = [
            [(0.5 if adapters and b.startswith("layer.") else 1.0) if b in h.get("trainable_blocks", []) else 0.0 for h in points]
            for b in blocks
        ]
        trainability.add_trace(
            go.Heatmap(z=z, x=[f"e{h['epoch']:g}" for h in points], y=blocks, zmin=0, zmax=1, showscale=col == 1,
                       colorscale=[[0, "#dbe9f6"], [0.5, "#fdae6b"], [1, "#d62728"]],
                       colorbar=dict(tickvals=[0, 0.5, 1], ticktext=["frozen", "adapters", "trainable"])),
            row=1, col=col,
        )
    trainability.update_layout(title="layer trainability per evaluation (rows: blocks bottom to top)", height=380)

    share = go.Figure()
    for row in rows:
        share.add_trace(go.Scatter(
            x=[max(row["trainable_percent"], 1e-3)], y=[row[f"validation_{metric}_mean"]], mode="markers+text",
            text=[row["name"]], textposition="top center", marker=dict(size=14, color=_color(row["strategy"])),
            error_y=dict(type="data", array=[row[f"validation_{metric}_std"] or 0.0]), name=row["name"],
        ))
    share.update_layout(title=f"validation {metric} against trainable-parameter share", xaxis_title="trainable parameters (%)",
                        xaxis_type="log", yaxis_title=metric, showlegend=False)

    forgetting = go.Figure()
    for name, summary in first_seed.items():
        cka = (summary["metrics"].get("forgetting") or {}).get("cka")
        if cka:
            forgetting.add_trace(go.Scatter(x=list(cka), y=list(cka.values()), mode="lines+markers", name=name,
                                            line=dict(color=_color(summary["info"]["strategy"]),
                                                      dash=dashes.get(summary.get("model"), "solid"))))
    forgetting.update_layout(title="forgetting: CKA between pretrained and fine-tuned representations (1 = unchanged)",
                             xaxis_title="block", yaxis_title="linear CKA")
    charts = [("curve-time", curve_time), ("curve-epoch", curve_epoch), ("trainability", trainability),
              ("metric-vs-share", share), ("forgetting", forgetting)]
    reliability = _reliability_figure(go, first_seed, dashes)
    return charts + ([("reliability", reliability)] if reliability is not None else [])


def _scored_split(summary: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The split a run's calibration and slices are reported on: test where it has one."""
    metrics = summary["metrics"]
    split = "test" if isinstance(metrics.get("test"), dict) else "validation"
    return split, metrics.get(split) or {}


def _reliability_figure(go: Any, first_seed: dict[str, dict[str, Any]], dashes: dict[Any, str]) -> Any:
    """Reliability diagram: accuracy against confidence per bin, the calibrated scores (solid) and,
    where a temperature was fitted, the uncalibrated ones (dotted); None when no run has the bins."""
    figure, drawn = go.Figure(), False
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#999", dash="dash"), name="perfect calibration"))
    for name, summary in first_seed.items():
        split, scored = _scored_split(summary)
        color = _color(summary["info"]["strategy"])
        for bins, label, dash in ((scored.get("reliability"), name, dashes.get(summary.get("model"), "solid")),
                                  ((scored.get("calibration") or {}).get("reliability_uncalibrated"), f"{name} (uncalibrated)", "dot")):
            if bins:
                drawn = True
                figure.add_trace(go.Scatter(x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
                                            name=label, line=dict(color=color, dash=dash),
                                            text=[f"{b['count']} examples" for b in bins], hovertemplate="%{text}"))
    figure.update_layout(title="reliability: accuracy against confidence (test split where given, else validation)",
                         xaxis_title="confidence", yaxis_title="accuracy", xaxis_range=[0, 1], yaxis_range=[0, 1])
    return figure if drawn else None


def trust_markdown(summaries: list[dict[str, Any]]) -> list[str]:
    """Calibration and per-slice sections of the report, a row per run; [] when no run has either."""
    names = [summary.get("name", summary["info"]["strategy"]) for summary in summaries]
    calibration_rows, slice_rows = [], []
    for name, summary in zip(names, summaries):
        if names.count(name) > 1:  # seeds (or runs) of one name: each by its folder
            name = f"{name} ({Path(str(summary.get('path'))).name})"
        split, scored = _scored_split(summary)
        fitted = summary["info"].get("calibration") or {}
        if "ece" in scored:
            before = (scored.get("calibration") or {}).get("ece_uncalibrated")
            temperature = fitted.get("temperature") if fitted.get("applied") else f"none ({fitted.get('reason', 'off')})"
            calibration_rows.append(f"| {name} | {split} | {temperature} | {_fmt(before, 4) if before is not None else '–'} | "
                                    f"{_fmt(scored['ece'], 4)} | {_fmt(scored.get('brier'), 4)} |")
        for column, table in (scored.get("slices") or {}).items():
            slice_rows.append(f"| {name} | {column} | {table.get('worst') or '–'} | {_fmt(table.get('worst_accuracy'), 4)} | "
                              f"{_fmt(table['accuracy'], 4)} | {_fmt(table.get('gap'), 4)} | {len(table['values'])} |")
    lines = []
    if calibration_rows:
        lines += ["", "## Calibration", "", "| run | split | temperature | ECE uncalibrated | ECE | Brier |", "|---|---|---|---|---|---|",
                  *calibration_rows]
    if slice_rows:
        lines += ["", "## Slices (--slice-col)", "", "| run | column | worst slice | its accuracy | whole split | gap | slices |",
                  "|---|---|---|---|---|---|---|", *slice_rows]
    return lines


def _trust_html(summaries: list[dict[str, Any]]) -> str:
    """The calibration and slice tables of ``trust_markdown`` as HTML."""
    parts, table = [], []
    for line in trust_markdown(summaries):
        if line.startswith("## "):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            tag = "th" if not table else "td"
            table.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
        elif not line and table:
            parts.append('<table class="trust">' + "".join(table) + "</table>")
            table = []
    if table:
        parts.append('<table class="trust">' + "".join(table) + "</table>")
    return "\n".join(parts)


def _table_html(rows: list[dict[str, Any]], metric: str) -> str:
    multi = _several_models(rows)
    head = ["model · strategy" if multi else "strategy", f"validation {metric} [95% bootstrap interval]", f"test {metric}", "trainable",
            *(["parameters", "on disk"] if multi else []), "train time", "peak memory", "forgetting (drift)", "status"]
    lines = ['<table class="results"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        status = "eliminated at rung %d" % row["eliminated_at_rung"] if row.get("eliminated_at_rung") is not None else ""
        status = f"stopped: {row['failed_reason']}" if row.get("failed_reason") else status
        cells = [
            row.get("name", row["strategy"]),
            _mean_std(row, f"validation_{metric}"),
            _mean_std(row, f"test_{metric}"),
            f"{row['trainable_params']:,} ({row['trainable_percent']:.2f}%)",
            *([f"{row['total_params'] / 1e6:.1f}M", f"{_fmt(row.get('size_on_disk_mb'), 1)} MB"] if multi else []),
            f"{_fmt(row['train_seconds_mean'], 1)} s",
            f"{_fmt(row['peak_memory_mb'], 0)} MB",
            _fmt(row["forgetting_drift"], 4),
            status,
        ]
        lines.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return "\n".join(lines) + "</tbody></table>"


def context_line(summaries: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """What was compared, on what: the data file(s), the sizes, the model(s), seeds, when."""
    import time

    infos = [s["info"] for s in summaries if s.get("path")] or [s["info"] for s in summaries]
    config = infos[0].get("config", {}) if infos else {}
    data = Path(str(config.get("data"))).name if config.get("data") else "?"
    validation = Path(str(config["validation"])).name if config.get("validation") else "a held-out split"
    models = sorted({str(row.get("model")) for row in rows if row.get("model")} or {str(config.get("model"))})
    seeds = max((row.get("seeds", 1) for row in rows), default=1)
    train, held_out = infos[0].get("num_train_examples") if infos else None, infos[0].get("num_validation_examples") if infos else None
    sizes = f"{train:,} training / {held_out:,} validation examples" if isinstance(train, int) and isinstance(held_out, int) else "sizes n/a"
    return (f"Data: {data} ({sizes}; validation: {validation}) · model{'s' if len(models) > 1 else ''}: "
            f"{', '.join(Path(m).name or m for m in models)} · {seeds} seed{'s' if seeds > 1 else ''} per strategy · "
            f"{len(rows)} compared · {time.strftime('%Y-%m-%d %H:%M')}")


def _mean_std(row: dict[str, Any], key: str) -> str:
    """'mean ± std' over seeds; one seed shows the mean alone (a spread never measured is not zero);
    then the 95% bootstrap interval over the validation examples where one was computed."""
    mean = row.get(f"{key}_mean")
    if mean is None:
        return "–"
    shown = f"{_fmt(mean)} ± {_fmt(row.get(f'{key}_std'))}" if row.get("seeds", 1) > 1 else _fmt(mean)
    interval = row.get(f"{key}_ci")
    return f"{shown} [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else shown


def _loss_points(evaluations: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(epoch, training loss) at every logged step of a run's evaluations (steps to epochs by the
    evaluations' own step/epoch ratio)."""
    last = next((h for h in reversed(evaluations) if h.get("step") and h.get("epoch")), None)
    if last is None:
        return []
    per_step = last["epoch"] / last["step"]
    return [(step * per_step, loss) for h in evaluations for step, loss in h.get("train_loss_points") or []]


def _several_models(rows: list[dict[str, Any]]) -> bool:
    return len({row.get("model") for row in rows}) > 1


def _advice_lines(advice: dict[str, Any] | None, winner: dict[str, Any], models_advice: dict[str, Any] | None = None) -> list[str]:
    sizes = [f"Model size ({models_advice['verdict']}): {models_advice['reason']}."] if models_advice else []
    if not advice:
        return [f"Measured winner: {winner['reason']}.", *sizes]
    agree = "agrees with" if advice["strategy"] == winner["strategy"] else "differs from"
    return [
        f"Advisor's recommendation (before training): {advice['strategy']} — {advice['reasons'][-1]}.",
        f"Measured winner: {winner['reason']}.",
        f"The advisor {agree} the measurement.",
        *sizes,
    ]


def write_report(folder: Path, summaries: list[dict[str, Any]], rows: list[dict[str, Any]], winner: dict[str, Any],
                 metric: str, advice: dict[str, Any] | None, models_advice: dict[str, Any] | None = None) -> None:
    charts = figures(summaries, rows, metric)
    parts = []
    for index, (name, figure) in enumerate(charts):
        figure.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=60, b=50))
        parts.append(f'<section class="chart" id="{name}">' + figure.to_html(
            full_html=False, include_plotlyjs=index == 0, div_id=f"chart-{name}", config={"displaylogo": False}
        ) + "</section>")
    advice_html = "".join(f"<p>{html.escape(line)}</p>" for line in _advice_lines(advice, winner, models_advice))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thawkit comparison</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.4rem 0.6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.winner {{ background: #f3f8ee; border-left: 4px solid #2ca02c; padding: 0.6rem 1rem; }}
</style></head>
<body data-charts="{len(charts)}">
<h1>Which {"model and strategy" if _several_models(rows) else "strategy"} for this data?</h1>
<p class="context">{html.escape(context_line(summaries, rows))}</p>
<div class="winner">{advice_html}</div>
<h2>Results</h2>
{_table_html(rows, metric)}
{_trust_html(summaries)}
{''.join(parts)}
<footer><p>thawkit · metric: {html.escape(metric)} · {len(summaries)} runs</p></footer>
</body></html>
"""
    (folder / "report.html").write_text(page, encoding="utf-8")
    (folder / "report.md").write_text(markdown_report(rows, winner, metric, advice, summaries, models_advice), encoding="utf-8")


def markdown_report(rows: list[dict[str, Any]], winner: dict[str, Any], metric: str, advice: dict[str, Any] | None,
                    summaries: list[dict[str, Any]], models_advice: dict[str, Any] | None = None) -> str:
    multi = _several_models(rows)
    sizes = " parameters | on disk |" if multi else ""
    lines = ["# thawkit comparison", "", context_line(summaries, rows), "",
             *(f"- {line}" for line in _advice_lines(advice, winner, models_advice)), "",
             f"| {'model · strategy' if multi else 'strategy'} | validation {metric} [95% bootstrap interval] | test {metric} | trainable |{sizes} train time | "
             "peak memory | forgetting (drift) |",
             "|---|---|---|---|---|---|---|" + ("---|---|" if multi else "")]
    for row in rows:
        test = _mean_std(row, f"test_{metric}")
        status = f" (eliminated at rung {row['eliminated_at_rung']})" if row.get("eliminated_at_rung") is not None else ""
        status = f" (stopped: {row['failed_reason']})" if row.get("failed_reason") else status
        size_cells = f" {row['total_params'] / 1e6:.1f}M | {_fmt(row.get('size_on_disk_mb'), 1)} MB |" if multi else ""
        lines.append(
            f"| {row.get('name', row['strategy'])}{status} | {_mean_std(row, f'validation_{metric}')} | "
            f"{test} | {row['trainable_percent']:.2f}% |{size_cells} {_fmt(row['train_seconds_mean'], 1)} s | "
            f"{_fmt(row['peak_memory_mb'], 0)} MB | {_fmt(row['forgetting_drift'], 4)} |"
        )
    lines += ["", "## Every metric (mean over seeds)", "", *_all_metrics_markdown(rows)]
    lines += trust_markdown(summaries)
    lines += ["", "## Trainable blocks per evaluation", ""]
    seen = set()
    for summary in summaries:
        name = summary.get("name", summary["info"]["strategy"])
        if name in seen:
            continue
        seen.add(name)
        stages = [f"e{h['epoch']:g}: {', '.join(h.get('trainable_blocks', []))}" for h in summary["history"] if "type" not in h]
        lines.append(f"- **{name}**: " + "; ".join(stages))
    lines += ["", "Charts: open `report.html` (self-contained, works offline).", ""]
    return "\n".join(lines)


def _all_metrics_markdown(rows: list[dict[str, Any]]) -> list[str]:
    from thawkit.compare.results import metric_columns

    columns = [c for c in metric_columns(rows) if c.endswith("_mean")]
    names = [c.removesuffix("_mean").replace("validation_", "val ").replace("test_", "test ") for c in columns]
    lines = ["| " + ("model · strategy" if _several_models(rows) else "strategy") + " | " + " | ".join(names) + " |",
             "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {row.get('name', row['strategy'])} | " + " | ".join(_fmt(row.get(c), 4) for c in columns) + " |" for row in rows]
    return lines


def report_from_runs(runs: list[Path], out: Path, metric: str | None = None) -> Path:
    """``thawkit report RUN [RUN...]``: the same report from existing run directories; the metric
    defaults to the one that selected the runs' best epochs."""
    from thawkit.compare.results import aggregate, label_summaries, load_run_summary, model_size_advice, name_winner, write_results

    summaries = [load_run_summary(path) for path in runs]
    if metric is None:
        info = summaries[0]["info"]
        metric = info.get("metric") or info.get("config", {}).get("metric") or "macro_f1"
    scored = sorted({name for s in summaries for name, value in s["metrics"].get("validation", {}).items()
                     if isinstance(value, (int, float)) and not isinstance(value, bool) and not name.startswith("num_")})
    if scored and metric not in scored:
        from thawkit.errors import ConfigError

        raise ConfigError(f"--metric {metric}: not a validation metric of these runs; fix: one of {', '.join(scored)}")
    label_summaries(summaries)
    rows = aggregate(summaries, metric)
    winner = name_winner(rows, metric)
    models_advice = model_size_advice(rows, metric) if _several_models(rows) else None
    import os
    import shutil
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    # Written beside the destination, then each file renamed into place: a crash leaves the old
    # report or the new one, never half a file.
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        write_results(rows, winner, metric, staging, {"runs": [str(p) for p in runs], "models_advice": models_advice})
        write_report(staging, summaries, rows, winner, metric, None, models_advice)
        for item in staging.iterdir():
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "report.html"


__all__ = ["write_report", "report_from_runs", "markdown_report", "figures", "json"]
