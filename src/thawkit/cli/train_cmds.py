"""``thawkit train``: its options are generated from ``TrainConfig`` and the strategies' configs."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from thawkit.cli.display import console, metrics_table, per_class_table
from thawkit.cli.options import CONFIG_FILE, command, config_parameters, config_values, strategy_parameters, strategy_values
from thawkit.config import flag_of
from thawkit.errors import ConfigError


def train_values(config: Optional[Path], given: dict[str, Any], resumable: bool = False,
                 data_fix: str = "pass --data FILE or set data: in the --config file",
                 strategy: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """YAML, then flags, then the strategy's own flags (``strategy``: the one a continued run has,
    else the named one): the values train, lr-find, distill and update share, and where each came
    from (for the plan's sources)."""
    from thawkit.config import TrainConfig, load_yaml_config

    values: dict[str, Any] = load_yaml_config(config, TrainConfig) if config is not None else {}
    sources = {name: f"config file {config}" for name in values}
    flags = config_values(TrainConfig, given)
    values.update(flags)
    sources.update({name: f"command line ({flag_of(name)})" for name in flags})
    if values.get("data") is None and not (resumable and values.get("resume") is not None):
        raise ConfigError(f"no training data; fix: {data_fix}")
    strategy = strategy or values.get("strategy", TrainConfig.model_fields["strategy"].default)
    chosen = strategy_values(given, [strategy]).get(strategy, {})
    values["strategy_options"] = {**(values.get("strategy_options") or {}), **chosen}
    if chosen:
        sources["strategy_options"] = "command line"
    return values, sources


def _train(config: Optional[Path] = None, dry_run: bool = False, **given: Any) -> None:
    """Train a model on your data with one strategy (any task) and write a run directory."""
    from thawkit.api import plan as plan_only
    from thawkit.api import train as train_run

    values, sources = train_values(config, given, resumable=True)
    if dry_run:
        print_plan(plan_only(values, sources=sources))
        return
    _summary(train_run(values, sources=sources))


def _plan(config: Optional[Path] = None, **given: Any) -> None:
    """Show the plan train would run, every setting with where its value comes from, without training (= train --dry-run)."""
    _train(config, dry_run=True, **given)


DRY_RUN = inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
    False, "--dry-run", help="print the plan (every setting and where its value comes from) and stop; nothing is trained"))


def _build_train() -> Any:
    from thawkit.config import TrainConfig

    return command(_train, [CONFIG_FILE, DRY_RUN], config_parameters(TrainConfig, command="train"), strategy_parameters())


def _build_plan() -> Any:
    from thawkit.config import TrainConfig

    return command(_plan, [CONFIG_FILE], config_parameters(TrainConfig), strategy_parameters())


train = _build_train()
plan_command = _build_plan()


def print_plan(plan: Any) -> None:
    """One line per setting a rule or the user decided (value, then where it came from), then how
    many kept their field default. Plain lines: long paths stay greppable."""
    rows = plan.rows()
    decided = [row for row in rows if row[2] != "default"]
    console.print(f"[bold]plan[/bold]: thawkit {plan.command}, task {plan.config.task}, strategy {plan.config.strategy}")
    width = max(len(name) for name, _, _ in decided)
    for name, value, source in decided:
        console.print(f"  {name:<{width}}  {value}  [dim]({source})[/dim]", soft_wrap=True, highlight=False, markup=True)
    if plan.cache_reason:
        console.print(f"  frozen-layer cache: {plan.cache_reason}", soft_wrap=True)
    console.print(f"{len(rows) - len(decided)} other settings keep their defaults (docs/config.md)")


def _summary(run: Any) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    info = run.info
    validation = run.metrics.get("validation", {})
    if "per_class" in validation:  # a classification run: the full tables
        console.print(metrics_table(run.metrics, title=f"{info['strategy']} on {info['base_model']}"))
        console.print(per_class_table(validation, title="validation per class"))
    else:
        console.print(run.headline())
    share = 100.0 * info["trainable_params"] / max(info["total_params"], 1)
    console.print(
        f"trainable params {info['trainable_params']:,} of {info['total_params']:,} ({share:.2f}%) · "
        f"train time {info['train_seconds']:.1f}s · peak memory {info['peak_memory_mb']:.0f} MB"
    )
    timings = info.get("timings") or {}
    if timings:
        console.print("time per phase: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    forgetting = run.metrics.get("forgetting")
    if forgetting:
        console.print(f"forgetting: mean CKA to the pretrained encoder {forgetting['mean_cka']:.3f} (min {forgetting['min_cka']:.3f})")
    for finding in info.get("guards", []):
        console.print(f"[yellow]warning[/yellow] {finding['guard']}: {finding['message']}; fix: {finding['fix']}")
    console.print(f"run saved to [bold]{run.path}[/bold]")
    if info.get("failed"):  # saved, but marked: under --strict the run stops with exit code 2 instead
        console.print(f"[red]failed quality check[/red]: {info['failed']} (thawkit.json → failed; --strict makes this an error)")


def _lr_find(config: Optional[Path] = None, steps: int = 100, start_lr: float = 1e-7, end_lr: Optional[float] = None,
             report: Optional[Path] = None, **given: Any) -> None:
    """LR range test: raise the LR exponentially for a few steps and show where the loss falls fastest and where it diverges."""
    import json

    from thawkit.api import lr_find

    values, sources = train_values(config, given)
    finding = lr_find(values, steps=steps, start_lr=start_lr, end_lr=end_lr, sources=sources)
    shown = finding.lrs[:: max(1, len(finding.lrs) // 12)]
    for lr in shown:
        console.print(f"  lr {lr:9.2e}  loss {finding.losses[finding.lrs.index(lr)]:.4f}")
    console.print(f"steepest fall at {finding.suggested_lr:.2e}" if finding.suggested_lr else "no clear fall of the loss")
    console.print(f"diverged at {finding.diverged_at:.2e}" if finding.diverged_at else "did not diverge within the range")
    console.print(finding.verdict())
    console.print("[dim]The range test is known to be unreliable for fine-tuning pretrained transformers (its pick is often "
                  "too high); thawkit's defaults come from measurement, see docs/defaults.md.[/dim]")
    if report is not None:
        report.write_text(json.dumps(finding.as_dict(), indent=2) + "\n", encoding="utf-8")


def _build_lr_find() -> Any:
    import inspect

    import typer

    from thawkit.config import TrainConfig

    extra = [
        inspect.Parameter("steps", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                          default=typer.Option(100, "--steps", min=10, help="steps of the range test")),
        inspect.Parameter("start_lr", inspect.Parameter.KEYWORD_ONLY, annotation=float,
                          default=typer.Option(1e-7, "--start-lr", help="first learning rate")),
        inspect.Parameter("end_lr", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[float],
                          default=typer.Option(None, "--end-lr", help="last learning rate (default: 10x the strategy's sane maximum)")),
        inspect.Parameter("report", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--report", help="write the curve and the findings as JSON")),
    ]
    return command(_lr_find, [CONFIG_FILE, *extra], config_parameters(TrainConfig, command="lr-find"), strategy_parameters())


lr_find_command = _build_lr_find()


def _distill(config: Optional[Path] = None, teacher: Optional[Path] = None, student: str = "layers:3",
             unlabeled: Optional[Path] = None, **given: Any) -> None:
    """Distill a fine-tuned classification, NER or similarity run (the teacher) into a smaller student; the student is a normal run."""
    from thawkit.api import distill

    values, sources = train_values(config, given, data_fix="pass --data FILE (examples labelled like the teacher's)")
    if teacher is None:
        raise ConfigError("no teacher; fix: pass --teacher RUN (a finished classification, NER or similarity run)")
    run, facts = distill(teacher, student, values, unlabeled=unlabeled, sources=sources)
    _summary(run)
    share = f"{100 * facts['retained_share']:.1f}%" if facts["retained_share"] is not None else "n/a"
    console.print(f"student {facts['student_params']:,} params vs teacher {facts['teacher_params']:,}; keeps {share} of the "
                  f"teacher's validation {facts['metric']}; {facts['speedup']:.2f}x faster ({facts['speed_measured_on']})")


def _build_distill() -> Any:
    import inspect

    import typer

    from thawkit.config import TrainConfig

    extra = [
        inspect.Parameter("teacher", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--teacher", help="the fine-tuned run to distill (classification, NER, similarity)")),
        inspect.Parameter("unlabeled", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--unlabeled", help="unlabeled text (one per line; similarity: a table of pairs) "
                                               "the teacher labels to extend the training split")),
        inspect.Parameter("student", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Option("layers:3", "--student", help="layers:N (the teacher with N evenly spaced layers) or a model")),
    ]
    return command(_distill, [CONFIG_FILE, *extra], config_parameters(TrainConfig, command="distill"), strategy_parameters())


distill_command = _build_distill()
