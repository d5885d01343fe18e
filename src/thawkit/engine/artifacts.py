"""After training: the forgetting measurement, the checked LoRA merge, and the run directory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from thawkit.rundir import HISTORY_FILE, LABELS_FILE, METRICS_FILE, RUN_FILE, publish, write_history, write_json


def model_outputs(output: Any) -> dict[str, torch.Tensor]:
    """Every tensor a model returns except the loss (logits, start/end logits, ...)."""
    items = output.items() if hasattr(output, "items") else enumerate(output if isinstance(output, tuple) else (output,))
    return {str(k): v for k, v in items if isinstance(v, torch.Tensor) and k != "loss"}


def merge_checked(model: Any, sample: dict[str, torch.Tensor]) -> Any:
    """Merge adapters into the base weights; the merged model must predict what the adapter model did."""
    model.eval()
    with torch.inference_mode():
        before = model_outputs(model(**sample))
    merged = model.merge_and_unload()
    merged.eval()
    with torch.inference_mode():
        after = model_outputs(merged(**sample))
    for name, value in before.items():
        if not torch.allclose(value.float(), after[name].float(), atol=1e-4, rtol=1e-4):
            diff = (value.float() - after[name].float()).abs().max().item()
            raise RuntimeError(f"merged LoRA model differs from the adapter model in {name} (max |diff| {diff:.2e})")
    return merged


def measure_forgetting_of(model_name: str, model: Any, tokenizer: Any, frozen_encoder: bool) -> dict[str, Any]:
    """Representation drift of the encoder against the pretrained one; known without measuring when
    nothing in the encoder trained."""
    from transformers import AutoModel

    from thawkit.data.probe import general_sentences
    from thawkit.guards.forgetting import measure_forgetting, unchanged_encoder
    from thawkit.models.backbone import from_pretrained_checked, load_mlm_if_trained, resolve_model_path

    if frozen_encoder:
        return unchanged_encoder(model)
    pretrained = from_pretrained_checked(AutoModel, model_name)
    mlm = load_mlm_if_trained(resolve_model_path(model_name))
    return measure_forgetting(model, pretrained, tokenizer, general_sentences(), mlm)


def write_run_files(
    cfg: Any, partial_dir: Path, final_dir: Path, tokenizer: Any, labels: dict[str, Any], info: dict[str, Any],
    metrics: dict[str, Any], history: list[dict[str, Any]], save_model: Callable[[Path], None],
) -> None:
    """Write everything under the partial name, then rename it into place."""
    if not cfg.save_checkpoints:
        shutil.rmtree(partial_dir / "checkpoints", ignore_errors=True)  # the Trainer's (empty) output_dir
    partial_dir.mkdir(parents=True, exist_ok=True)
    save_model(partial_dir)
    tokenizer.save_pretrained(str(partial_dir))
    write_json(partial_dir / LABELS_FILE, labels)
    write_json(partial_dir / RUN_FILE, info)
    write_json(partial_dir / METRICS_FILE, metrics)
    write_history(partial_dir / HISTORY_FILE, history)
    publish(partial_dir, final_dir, cfg.overwrite)
