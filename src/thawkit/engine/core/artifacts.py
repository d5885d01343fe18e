"""After training: the forgetting measurement, the checked LoRA merge, and the run directory."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from thawkit.engine.core.resume import PLAN_FILE
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


def base_card_metadata(base_model: str) -> dict[str, Any]:
    """license and language of the base model's own card (its README.md front matter, in a local
    folder or the packaged alias's): a fine-tuned model inherits them. Empty when it has none."""
    from huggingface_hub import ModelCard

    from thawkit.models.backbone import resolve_model_path

    try:
        readme = Path(resolve_model_path(base_model)) / "README.md"
        data = ModelCard.load(readme).data.to_dict() if readme.is_file() else {}
    except Exception:  # noqa: BLE001 - a base without a readable card: nothing inherited
        return {}
    return {key: data[key] for key in ("license", "language") if data.get(key)}


_LIMITS_HEADINGS = ("bias", "limitation", "risk", "intended use", "out-of-scope")


def base_card_limits(base_model: str) -> tuple[str, str] | None:
    """(heading, first paragraph) of the base model's own card section on bias, limitations or
    intended use, where its README.md has one; None otherwise."""
    import re

    from thawkit.models.backbone import resolve_model_path

    try:
        readme = Path(resolve_model_path(base_model)) / "README.md"
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    except Exception:  # noqa: BLE001 - a base without a readable card says nothing
        return None
    sections = re.split(r"^(#{1,4} .+)$", text, flags=re.MULTILINE)
    for heading, body in zip(sections[1::2], sections[2::2]):
        if any(word in heading.lower() for word in _LIMITS_HEADINGS):
            paragraph = next((p.strip() for p in body.split("\n\n") if p.strip() and not p.strip().startswith("```")), "")
            if paragraph:
                return heading.lstrip("#").strip(), " ".join(paragraph.split())[:600]
    return None


def bias_and_limitations(info: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    """The card's "Bias and limitations": the training labels' distribution, per-slice scores
    (--slice-col), the calibration, and what the base model's own card says of its limits."""
    lines = ["## Bias and limitations", ""]
    counts = info.get("label_distribution")
    if counts:
        total = sum(counts.values()) or 1
        shown = ", ".join(f"{label} {n} ({n / total:.0%})" for label, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        lines += [f"- Training labels: {shown}. A class with few examples is predicted less reliably.", ""]
    split = "test" if isinstance(metrics.get("test"), dict) else "validation"
    for column, table in ((metrics.get(split) or {}).get("slices") or {}).items():
        lines += [f"Scores per `{column}` ({split} split):", "", f"| {column} | examples | accuracy | macro-F1 |", "|---|---|---|---|"]
        lines += [f"| {value}{' (worst)' if value == table.get('worst') else ''} | {s['examples']} | {s['accuracy']:.4f} | "
                  f"{s['macro_f1']:.4f} |" for value, s in table["values"].items()]
        if table.get("worst") is not None:
            lines += ["", f"- Worst `{column}` slice: `{table['worst']}`, accuracy {table['worst_accuracy']:.4f}, "
                          f"{table['gap']:.4f} below the whole split ({table['accuracy']:.4f})."]
        lines.append("")
    calibration = info.get("calibration") or {}
    scored = metrics.get(split) or {}
    if calibration.get("applied") and "calibration" in scored:
        lines += [f"- Scores are calibrated (temperature {calibration['temperature']}, fitted on validation): {split} "
                  f"expected calibration error {scored['calibration']['ece_uncalibrated']:.4f} -> {scored['ece']:.4f}.", ""]
    elif calibration:
        lines += [f"- Scores are not calibrated ({calibration.get('reason')}).", ""]
    limits = base_card_limits(info.get("base_model", ""))
    if limits is not None:
        lines += [f"- The base model's card ({limits[0]}): \"{limits[1]}\"", ""]
    lines += ["- The model inherits the biases of its base model's pretraining text and of this training data.", ""]
    return lines


def _card_metrics(values: dict[str, Any]) -> list[tuple[str, float]]:
    """What a model-index lists: the measured scores, not counts or the loss."""
    return [(name, round(float(value), 4)) for name, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and name != "loss" and not name.startswith("num_")]


def stock_usage(task: Any, layout: str) -> list[str]:
    """The card's lines on loading the folder without thawkit: the task's stock snippet for a
    standard folder; what holds instead for an adapter or a feature head."""
    if layout == "adapter":
        return ["An unmerged PEFT adapter: `peft`'s `AutoPeftModelFor...` classes load it on its base "
                "(`adapter_config.json` names it; `config.json` holds the labels); train with `--merge-lora` for a "
                "folder every stock tool loads directly."]
    if layout == "onnx":
        return ["An ONNX graph (`model.onnx`, opset 17; `export.json` has its inputs, outputs, parity with PyTorch and any "
                "quantization): `onnxruntime.InferenceSession(\"RUN_FOLDER/model.onnx\")` runs it on the tokenizer's "
                "`input_ids`/`attention_mask`, and optimum's `ORTModelFor...` classes load the folder (it carries "
                "`config.json`). The scores are the run's logits; `thawkit predict` applies the softmax and the labels."]
    if layout == "sentence-transformers-head":
        return ["Without thawkit (predictions equal `thawkit predict`'s, tested): `backbone/` is a sentence-transformers "
                "folder (the body, its pooling, and its normalisation where the head reads it) and the head a linear layer on its embeddings:", "",
                "```python", _SENTENCE_TRANSFORMERS_HEAD.replace("{run}", "RUN_FOLDER"), "```"]
    if layout == "feature-head":
        return ["No stock loader reads this folder whole: `backbone/` is a standard `AutoModel` folder and the head "
                "(`thawkit_head.json` + `thawkit_head.safetensors`, a pooling and a linear/MLP layer) is thawkit's; load it "
                "with `thawkit.load(RUN)`, or export it with `thawkit export RUN --onnx` (pooling and head in the graph)."]
    if task.stock_python is None:
        return [task.stock_note] if task.stock_note else []
    return ["Without thawkit (predictions equal `thawkit predict`'s, tested):", "", "```python",
            task.stock_python.replace("{run}", "RUN_FOLDER"), "```"]


_SENTENCE_TRANSFORMERS_HEAD = """import json
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
body = SentenceTransformer("{run}/backbone")
head = load_file("{run}/thawkit_head.safetensors")  # a linear layer on the body's embeddings
labels = json.load(open("{run}/labels.json"))["labels"]
logits = body.encode(["your text"], convert_to_tensor=True) @ head["1.weight"].T + head["1.bias"]
print(dict(zip(labels, logits.softmax(-1)[0].tolist())))"""


def feature_head_layout(folder: Path) -> str:
    """'sentence-transformers-head' where ``backbone/`` is a sentence-transformers folder (saved only
    where its embeddings are exactly what the head reads: pooling, and Normalize where the head
    normalises) and the head is one linear layer for one label; else 'feature-head'."""
    head = json.loads((folder / "thawkit_head.json").read_text(encoding="utf-8"))
    stock = ((folder / "backbone" / "modules.json").exists() and head.get("head") in ("linear", "logreg")
             and head.get("problem_type") == "single_label_classification")
    return "sentence-transformers-head" if stock else "feature-head"


def model_card(info: dict[str, Any], metrics: dict[str, Any], task: Any, adapter: bool, layout: str = "standard") -> str:
    """README.md for the run: front matter built with huggingface_hub's ``ModelCardData`` and
    ``EvalResult`` (base model, its license and language, the model-index with the measured
    metrics) and what a reader needs to trust or reuse it; ``task`` (its serving role) gives the
    pipeline tag, the library and the usage snippet; ``adapter``: the folder is an unmerged PEFT adapter."""
    from huggingface_hub import EvalResult, ModelCardData

    from thawkit.models.backbone import lineage_model_name, lineage_note

    tag = task.pipeline_tag
    config = info.get("config", {})
    data_files = {"validation": config.get("validation") or config.get("data"), "test": config.get("test")}
    results = [
        EvalResult(task_type=tag, dataset_type="custom", dataset_split=split, metric_type=name, metric_name=name.replace("_", " "),
                   metric_value=value,
                   dataset_name=f"{Path(str(data_files[split])).name if data_files.get(split) else split}"
                                f"{' (held-out split)' if split == 'validation' and not config.get('validation') else ''}")
        for split, values in metrics.items() if split in ("validation", "test") and isinstance(values, dict)
        for name, value in _card_metrics(values)
    ]
    teacher = (info.get("distillation") or {}).get("teacher")
    card = ModelCardData(
        library_name="peft" if adapter else "onnx" if layout == "onnx" else
        "sentence-transformers" if layout == "sentence-transformers-head" else task.card_library,
        base_model=lineage_model_name(info["base_model"]),
        pipeline_tag=tag,
        tags=["thawkit", f"strategy-{info['strategy']}", *(["distillation"] if teacher else []), *(["onnx"] if layout == "onnx" else [])],
        model_name=Path(str(config.get("out") or "thawkit-run")).name,
        eval_results=results or None,
        **base_card_metadata(info["base_model"]),
    )
    headline = metrics.get("validation", {}).get(info.get("metric"))
    lines = [
        "---", card.to_yaml().strip(), "---", "",
        f"# {tag} fine-tuned with thawkit", "",
        f"- Base model: `{lineage_model_name(info['base_model'])}`"
        + (f" ({lineage_note(info['base_model'])})" if lineage_note(info["base_model"]) else ""),
        f"- Strategy: `{info['strategy']}` {json.dumps(info.get('strategy_resolved') or {}, sort_keys=True)}; "
        f"learning rate {info.get('learning_rate')}; {info.get('global_steps', 0)} steps",
        f"- Trainable parameters: {info.get('trainable_params', 0):,} of {info.get('total_params', 0):,}",
        f"- Data: {info.get('num_train_examples')} training and {info.get('num_validation_examples')} validation examples "
        f"(validation: {info.get('validation_source')}); max length {info.get('config', {}).get('max_length')} tokens",
        f"- Validation {info.get('metric')}: {headline:.4f}" if isinstance(headline, (int, float)) else "- Validation metric: n/a",
    ]
    if teacher:
        lines.append(f"- Distilled from the teacher run `{teacher}` (student {info['distillation'].get('student')})")
    if card.license:
        lines.append(f"- License: `{card.license}`, the base model's (as its own card states)")
    if info.get("failed"):
        lines.append(f"- **Quality check failed**: {info['failed']}")
    lines += [
        "", "## Intended use", "",
        "Predictions on text like the training data. Measured only on the splits above; check it on your own "
        "held-out data before relying on it, and expect it to degrade on other domains.", "",
        *bias_and_limitations(info, metrics),
        "## Use", "", "```bash", task.usage_snippet(), "```", "",
        *stock_usage(task, layout), "",
        *([f"Trained on overlapping windows of {config.get('max_length')} tokens (`--long-text window`): `thawkit predict` "
           f"scores a longer text by pooling its windows ({config.get('window_pooling')}); stock pipelines see only its first "
           f"{config.get('max_length')} tokens.", ""] if config.get("long_text") == "window" else []),
        "`thawkit.json` records every setting.", "",
    ]
    return "\n".join(lines)


def write_run_files(
    cfg: Any, partial_dir: Path, final_dir: Path, tokenizer: Any, labels: dict[str, Any], info: dict[str, Any],
    metrics: dict[str, Any], history: list[dict[str, Any]], save_model: Callable[[Path], None], task: Any,
) -> None:
    """Write everything under the partial name, then rename it into place."""
    partial_dir.mkdir(parents=True, exist_ok=True)
    save_model(partial_dir)
    # Stock pipelines truncate at model_max_length: make it the length the model was trained and
    # evaluated at, so they predict what thawkit does.
    tokenizer.model_max_length = int(cfg.max_length)
    tokenizer.save_pretrained(str(partial_dir))
    adapter = (partial_dir / "adapter_config.json").exists()
    layout = "adapter" if adapter else feature_head_layout(partial_dir) if (partial_dir / "thawkit_head.json").exists() else "standard"
    (partial_dir / "README.md").write_text(model_card(info, metrics, task, adapter, layout), encoding="utf-8")
    write_json(partial_dir / LABELS_FILE, labels)
    write_json(partial_dir / RUN_FILE, info)
    write_json(partial_dir / METRICS_FILE, metrics)
    write_history(partial_dir / HISTORY_FILE, history)
    # Only now, with everything written, are the resumable checkpoints no longer needed (a kill
    # before this point resumes from them).
    logs = partial_dir / "checkpoints" / "runs"  # the Trainer's TensorBoard folder: kept with the run
    if logs.is_dir():
        shutil.rmtree(partial_dir / "logs", ignore_errors=True)
        shutil.move(str(logs), str(partial_dir / "logs"))
    if not cfg.save_checkpoints:
        shutil.rmtree(partial_dir / "checkpoints", ignore_errors=True)
    (partial_dir / PLAN_FILE).unlink(missing_ok=True)  # for --resume only; thawkit.json keeps the plan
    publish(partial_dir, final_dir, cfg.overwrite)
