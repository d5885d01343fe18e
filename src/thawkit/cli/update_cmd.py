"""``thawkit update RUN --data new.csv``: continue a run on new labelled data (new classes allowed),
with replay, judged on the old and the new validation examples."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from thawkit.cli.display import console
from thawkit.cli.options import CONFIG_FILE, command, config_parameters, strategy_parameters


def _update(run: Path, config: Optional[Path] = None, replay: Optional[int] = None, tolerance: float = 0.01,
            accept_forgetting: bool = False, old_data: Optional[Path] = None, **given: Any) -> None:
    """Continue a finished classification run on new labelled data: new classes allowed (the output
    layer grows), a sample of its old training examples replayed beside the new ones, every setting
    its user chose kept. Reports the old and the new validation examples' metrics before and after;
    an update that loses more than --tolerance on the old ones is refused (kept aside as OUT-rejected)."""
    from thawkit.api import update as update_api
    from thawkit.cli.train_cmds import train_values
    from thawkit.paths import check_data_path
    from thawkit.rundir import read_run_files

    check_data_path(run, "pass a finished run folder")
    values, sources = train_values(config, given, data_fix="pass --data FILE (labelled examples; new classes allowed)",
                                    strategy=read_run_files(run)[1].get("strategy", ""))
    if old_data is not None:
        check_data_path(old_data, "pass the run's training file as --old-data")
    updated, report = update_api(run, values, replay=replay, tolerance=tolerance, accept_forgetting=accept_forgetting,
                                 old_data=old_data, sources=sources)
    console.print(update_table(report))
    if report["new_labels"]:
        console.print(f"new classes: {', '.join(report['new_labels'])}")
    console.print(f"trained on {report['new_train_examples']:,} new examples and {report['replayed_examples']:,} replayed "
                  f"(of {report['replay_pool']:,} old training examples)")
    console.print(f"forgetting: {report['forgetting']:+.3f} {report['metric']} on the old validation examples (tolerance "
                  f"{report['tolerance']:g}): {report['verdict']}")
    console.print(f"run saved to [bold]{updated.path}[/bold]")


def update_table(report: dict[str, Any]) -> Table:
    metric = report["metric"]
    table = Table(title=f"update of {report['from']} ({metric})")
    for column in ("validation examples", "n", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "validation examples" else "right")
    for name, title in (("old_validation", "the run's own"), ("new_validation", "the new data's")):
        row = report[name]
        table.add_row(title, f"{row['examples']:,}", f"{row['before'][metric]:.4f}", f"{row['after'][metric]:.4f}",
                      f"{row['change'][metric]:+.4f}")
    return table


def _build_update() -> Any:
    from thawkit.config import TrainConfig

    leading = [
        inspect.Parameter("run", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path,
                          default=typer.Argument(..., help="the finished run to continue")),
        CONFIG_FILE,
        inspect.Parameter("replay", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[int],
                          default=typer.Option(None, "--replay", help="old training examples replayed beside the new ones, "
                                               "sampled with --seed (default: all of them; 0: none)")),
        inspect.Parameter("tolerance", inspect.Parameter.KEYWORD_ONLY, annotation=float,
                          default=typer.Option(0.01, "--tolerance", help="largest drop of the selection metric on the run's own "
                                               "validation examples an update may have")),
        inspect.Parameter("accept_forgetting", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--accept-forgetting", help="keep an update that forgets more than "
                                               "--tolerance")),
        inspect.Parameter("old_data", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--old-data", help="the run's training file, when the path it recorded "
                                               "is not readable here")),
    ]
    return command(_update, leading, config_parameters(TrainConfig, command="update"), strategy_parameters())


update = _build_update()
