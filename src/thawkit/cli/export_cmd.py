"""`thawkit export RUN --onnx [--quantize int8] --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from thawkit.cli.display import console
from thawkit.errors import ConfigError


def export(
    run: Path = typer.Argument(..., help="a finished run folder"),
    onnx: bool = typer.Option(False, "--onnx", help="export to ONNX (the only format so far)"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: static, activation scales calibrated on the run's training texts; int8-dynamic: scales at run time, each text run alone; either way a text's scores never depend on its batch, and the metric change is reported"),
    out: Path = typer.Option(..., "--out", help="folder to write (predict/evaluate/serve run it through onnxruntime)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing folder"),
) -> None:
    """Export a run to ONNX, checked against PyTorch; optionally quantized to int8."""
    if not onnx:
        raise ConfigError("name the format; fix: thawkit export RUN --onnx --out DIR")
    try:
        from thawkit.engine.programs.export import export_onnx
    except ImportError as exc:
        raise ConfigError(f"export needs onnxruntime and onnx ({exc.name} is missing); fix: pip install 'thawkit[export]'") from None
    facts = export_onnx(run, out, quantize, overwrite)
    console.print(f"ONNX parity with PyTorch: max |diff| {facts['parity_max_abs_diff']:.2e} ({facts['parity_checked_on']})")
    q = facts.get("quantization")
    if q and q.get("metric_change_points") is not None:
        console.print(f"int8: validation {q['metric']} {q['fp32']:.4f} -> {q['int8']:.4f} ({q['metric_change_points']:+.2f} points, "
                      f"{q['validation_examples']} examples)")
    elif q:
        console.print(f"int8: {q.get('note')}")
    console.print(f"exported to [bold]{facts['path']}[/bold]; thawkit predict {facts['path']} 'text'")
