"""`thawkit dapt`: domain-adaptive (continued masked-LM) pretraining on unlabeled text."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from thawkit.cli.display import console


def dapt(
    text: Path = typer.Option(..., "--text", help="unlabeled text: .txt (one document per line), a folder of .txt, or JSONL/CSV with a text column"),
    model: str = typer.Option("minilm-l6", "--model", help="encoder to adapt (hub id, folder or alias)"),
    out: Optional[Path] = typer.Option(None, "--out", help="backbone folder to write (thawkit train --model OUT)"),
    epochs: float = typer.Option(1.0, "--epochs", min=0.01, help="passes over the text"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="optimizer steps instead of --epochs"),
    mlm_prob: float = typer.Option(0.15, "--mlm-prob", help="share of tokens masked"),
    whole_word: bool = typer.Option(False, "--whole-word", help="mask whole words (fast tokenizer offsets)"),
    line_by_line: bool = typer.Option(False, "--line-by-line", help="one block per line instead of concatenated max-length blocks"),
    max_length: int = typer.Option(128, "--max-length", min=8, help="tokens per block"),
    lr: float = typer.Option(1e-4, "--lr", min=0, help="learning rate (DAPT papers: 1e-4 with 6% warmup)"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="text column of a JSONL/CSV file (task-adaptive: the task's own file)"),
    seed: int = typer.Option(42, "--seed", min=0),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing folder"),
) -> None:
    """Continue masked-LM pretraining on your domain's text; fine-tune the result with thawkit train --model OUT."""
    from thawkit.paths import check_data_path

    check_data_path(text)  # before the heavy imports
    from thawkit.api import dapt as run

    facts = run(text, model=model, out=out, epochs=epochs, max_steps=steps, mlm_probability=mlm_prob, whole_word=whole_word,
                line_by_line=line_by_line, max_length=max_length, lr=lr, batch_size=batch_size, text_col=text_col, seed=seed,
                overwrite=overwrite)
    before, after = facts["metrics"]["before"], facts["metrics"]["after"]
    for name in before:
        console.print(f"{name}: MLM loss {before[name]['mlm_loss']:.3f} -> {after[name]['mlm_loss']:.3f} "
                      f"(pseudo-perplexity {before[name]['pseudo_perplexity']:.1f} -> {after[name]['pseudo_perplexity']:.1f})")
    if facts["new_mlm_head"]:
        console.print("[yellow]note[/yellow]: the checkpoint had no trained MLM head; a new one was initialised (tied to the "
                      "input embeddings), so 'before' measures an untrained head")
    console.print(f"{facts['global_steps']} steps in {facts['train_seconds']:.1f}s; adapted encoder saved to [bold]{facts['path']}[/bold]; "
                  f"next: thawkit train --model {facts['path']} --data ...")
