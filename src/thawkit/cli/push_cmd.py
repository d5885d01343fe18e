"""``thawkit push RUN REPO_ID``: publish a run to the Hugging Face Hub (private by default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from thawkit.cli.display import console


def push(
    run: Path = typer.Argument(..., help="a finished run folder (or an exported one)"),
    repo_id: str = typer.Argument(..., help="the Hub repository: user/name or org/name (created when missing)"),
    public: bool = typer.Option(False, "--public", help="create the repository public (default: private)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be sent, and any fix to the card; send nothing"),
    revision: Optional[str] = typer.Option(None, "--revision", help="branch to commit to (default: main)"),
    message: Optional[str] = typer.Option(None, "--message", help="commit message (default: thawkit run NAME)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable summary"),
) -> None:
    """Push a run folder to the Hugging Face Hub in one commit: the model (or adapter), tokenizer,
    labels, metrics, thawkit.json and the model card. HF_TOKEN (or 'hf auth login') authenticates;
    HF_ENDPOINT names another Hub."""
    from thawkit.api import push as push_api

    facts = push_api(run, repo_id, private=not public, dry_run=dry_run, revision=revision, message=message)
    if as_json:
        print(json.dumps(facts, indent=2))
        return
    total = sum(f["bytes"] for f in facts["files"])
    verb = "would send" if dry_run else "sent"
    console.print(f"{verb} {len(facts['files'])} files ({total / 1e6:.1f} MB) to {'private' if facts['private'] else 'public'} "
                  f"repository {facts['repo_id']}:")
    for item in facts["files"]:
        console.print(f"  {item['path']}  {item['bytes']:,} bytes")
    for line in facts["changes"]:
        console.print(f"changed: {line}")
    for line in facts["warnings"]:
        console.print(f"[yellow]warning[/yellow]: {line}")
    if not dry_run:
        console.print(f"pushed: {facts['url']} (commit {facts['commit'][:10]})")
