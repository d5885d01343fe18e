"""``thawkit select``: which unlabeled texts to label next, written as a CSV ready to label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from thawkit.cli.display import console


def select(
    pool: Path = typer.Option(..., "--pool", help="unlabeled texts: one per line (.txt) or a table with a text column"),
    budget: int = typer.Option(..., "--budget", help="how many texts to label next"),
    run: Optional[Path] = typer.Option(None, "--run", help="a classification run: weight by its uncertainty (else diversity alone)"),
    from_labeled: Optional[Path] = typer.Option(None, "--from-labeled",
                                                help="texts labeled in earlier rounds: excluded, and the picks spread away from them"),
    model: Optional[str] = typer.Option(None, "--model", help="encoder for the embeddings (default: the run's body or base, else minilm-l6)"),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="text column of --pool / --from-labeled tables"),
    seed: int = typer.Option(42, "--seed", help="the draws' seed: the same inputs and seed give the same picks"),
    out: Path = typer.Option(Path("to-label.csv"), "--out", help="the CSV to write (text, an empty label column)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable summary"),
) -> None:
    """Choose which texts to label next: diverse ones (k-means++ on sentence embeddings), or with --run
    the ones the model is least sure of, spread over the pool."""
    from thawkit.errors import ConfigError
    from thawkit.paths import check_data_path

    if budget < 1:
        raise ConfigError(f"--budget {budget}: select at least one text; fix: e.g. --budget 16")
    for given, flag in ((pool, "--pool"), (from_labeled, "--from-labeled"), (run, "--run")):
        if given is not None:
            check_data_path(given, f"check the {flag} path")
    inputs = [p.resolve() for p in (pool, from_labeled) if p is not None]
    if out.resolve() in inputs:
        raise ConfigError(f"--out {out} is an input file; fix: write the selection to another file")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out} exists; fix: pass --overwrite to replace it, or another --out")
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out} is a folder; fix: name a .csv file")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist; fix: create it or choose another --out")
    from thawkit.api import select as run_select
    from thawkit.engine.programs.select import write_selection

    selection = run_select(pool, budget, run, from_labeled, model, text_col, seed)
    write_selection(selection, out)
    if as_json:
        print(json.dumps({**selection.as_dict(), "out": str(out)}, indent=2))
        return
    console.print(f"{len(selection.texts)} of {selection.pool_size - selection.excluded} unlabeled texts selected by "
                  f"{selection.method}; embeddings: {selection.embedder}; seed {selection.seed}")
    if selection.excluded:
        console.print(f"{selection.excluded} pool texts are in {from_labeled} already and were left out")
    console.print(f"written to {out}: fill in the label column, then train with --data {out} (or append it to your labeled file)")
