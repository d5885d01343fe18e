"""``thawkit drift RUN --data new.csv``: has the data moved away from what the run was trained on?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from thawkit.cli.display import console


def drift(
    run: Path = typer.Argument(..., help="a finished run folder"),
    data: Path = typer.Option(..., "--data", help="the texts the model sees now (a table with a text column, or .txt)"),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="text column of --data (and --reference) tables"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="texts like the training data, when the run's own "
                                             "training file is not readable here"),
    sample: int = typer.Option(2000, "--sample", min=10, max=100_000, help="texts compared from each side, at most"),
    seed: int = typer.Option(42, "--seed", help="seed of the samples and the folds"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable report"),
) -> None:
    """Has the data drifted from what the run was trained on? Prints a plain verdict.

    Input drift: a classifier telling training texts from new ones (ROC AUC on sentence embeddings);
    prediction drift: PSI of the predicted labels against the run's predictions on its validation
    split; each against a threshold, the run's own validation split as the no-drift reference."""
    from thawkit.api import drift as drift_api
    from thawkit.paths import check_data_path

    for path, flag in ((data, "--data"), (reference, "--reference")):
        if path is not None:
            check_data_path(path, f"pass an existing file as {flag}")
    report = drift_api(run, data, text_col=text_col, reference=reference, sample=sample, seed=seed)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    inputs, predictions = report["inputs"], report["predictions"]
    reference_auc = inputs["reference_auc"]
    console.print(f"inputs: AUC {inputs['auc']:.3f} (threshold {inputs['threshold']:.3f}; training vs its own validation: "
                  f"{'n/a' if reference_auc is None else f'{reference_auc:.3f}'}), {report['new_examples']} new texts against "
                  f"{report['reference_examples']} training texts, embedded by {report['embedder']}")
    if predictions is not None:
        shares = ", ".join(f"{label} {predictions['reference'][label]:.0%} -> {share:.0%}" for label, share in predictions["predicted"].items())
        console.print(f"predicted labels: PSI {predictions['psi']:.3f} (threshold {predictions['threshold']}); {shares}")
    console.print(("[bold red]" if report["drifted"] else "[bold green]") + report["verdict"] + "[/]")
