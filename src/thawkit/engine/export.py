"""`thawkit export RUN --onnx [--quantize int8]`: an ONNX folder that `predict`, `evaluate` and
`serve` run through onnxruntime, checked against PyTorch when it is written.

Classification runs so far (NER, QA and similarity export: not yet). Dynamic batch and sequence
axes; outputs compared with PyTorch on real sentences (max |diff| must be <= 1e-4, reported); int8
dynamic quantization reports the validation-metric change on the run's own validation split and
warns above one point (small MiniLM models are known to lose accuracy under some int8 settings).
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from thawkit.errors import ConfigError
from thawkit.rundir import LABELS_FILE, RUN_FILE, check_destination, partial_dir_for, publish, read_run_files, write_json
from thawkit.models.onnx import onnx_logits
from thawkit.tasks import task_for_run

log = logging.getLogger("thawkit")

ONNX_FILE = "model.onnx"
EXPORT_FILE = "export.json"
PARITY_TOLERANCE = 1e-4


class _LogitsOnly:
    """A module returning only the logits tensor (what ONNX exports as its output)."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
                inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    inputs["token_type_ids"] = token_type_ids
                output = self.model(**inputs)
                return output.logits if hasattr(output, "logits") else output[0]

        return Wrapper().eval()


def export_onnx(run_path: Path, out: Path, quantize: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    import torch

    run_dir, info, labels = read_run_files(run_path)
    if info.get("task") != "sequence-classification":
        raise ConfigError(f"{run_path}: ONNX export supports classification runs so far (this is {info.get('task')}); "
                          "fix: export a classification run")
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize {quantize}: only int8 (dynamic) is offered; fix: --quantize int8 or drop it")
    check_destination(out, overwrite)
    run = task_for_run(info["task"]).load_run(run_dir, info, labels)
    model = run.model
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    wrapper = _LogitsOnly(model.eval())
    tokenizer = run.tokenizer
    sample = _probe_texts()
    batch = tokenizer(sample[:4], padding=True, truncation=True, max_length=run.max_length, return_tensors="pt")
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch]
    partial = partial_dir_for(out)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with torch.inference_mode():
            torch.onnx.export(wrapper, tuple(batch[k] for k in names), str(partial / ONNX_FILE), input_names=names,
                              output_names=["logits"], opset_version=17, dynamo=False,
                              dynamic_axes={**{k: {0: "batch", 1: "sequence"} for k in names}, "logits": {0: "batch"}})
        parity = _parity(run, partial / ONNX_FILE, names, sample)
        if parity > PARITY_TOLERANCE:
            raise RuntimeError(f"the ONNX model differs from PyTorch by {parity:.2e} (> {PARITY_TOLERANCE:g}); not exported")
        facts: dict[str, Any] = {"format": "onnx", "opset": 17, "inputs": names, "parity_max_abs_diff": parity,
                                 "parity_checked_on": f"{len(sample)} general-English sentences", "quantization": None}
        if quantize == "int8":
            facts["quantization"] = _quantize(run, info, partial, names)
        tokenizer.save_pretrained(str(partial))
        write_json(partial / LABELS_FILE, labels)
        write_json(partial / RUN_FILE, {**info, "exported_from": str(run_dir), "onnx": facts})
        write_json(partial / EXPORT_FILE, facts)
        if (run_dir / "metrics.json").exists():
            shutil.copy2(run_dir / "metrics.json", partial / "metrics.json")
        publish(partial, out, overwrite)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {**facts, "path": str(out)}


def _probe_texts() -> list[str]:
    from thawkit.data.probe import general_sentences

    return general_sentences()[:64]


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _parity(run: Any, onnx_path: Path, names: list[str], texts: list[str]) -> float:
    reference = run.logits(texts)
    exported = onnx_logits(_session(onnx_path), run.tokenizer, names, texts, None, run.max_length, batch_size=16)
    return float(np.abs(reference - exported).max())


def _quantize(run: Any, info: dict[str, Any], folder: Path, names: list[str]) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = folder / "model-fp32.onnx"
    (folder / ONNX_FILE).rename(fp32)
    quantize_dynamic(str(fp32), str(folder / ONNX_FILE), weight_type=QuantType.QInt8)
    result: dict[str, Any] = {"kind": "int8 dynamic (weights int8, activations quantized at run time)",
                              "fp32_model": fp32.name}
    texts, pairs, gold = _validation_split(info)
    if texts is None:
        result["metric_change"] = None
        result["note"] = "the run's validation data is not readable from here; metric change not measured"
        return result
    from thawkit.tasks.classification_metrics import scalar_metrics

    multi = run.multi_label
    before = scalar_metrics(onnx_logits(_session(fp32), run.tokenizer, names, texts, pairs, run.max_length), gold, multi)
    after = scalar_metrics(onnx_logits(_session(folder / ONNX_FILE), run.tokenizer, names, texts, pairs, run.max_length), gold, multi)
    metric = info.get("metric") or "macro_f1"
    change = (after.get(metric, 0.0) - before.get(metric, 0.0)) * 100
    result.update({"metric": metric, "fp32": before.get(metric), "int8": after.get(metric), "metric_change_points": round(change, 3),
                   "validation_examples": len(texts)})
    if change < -1.0:
        log.warning("int8 quantization lost %.2f points of validation %s (%.4f -> %.4f); the fp32 model is kept as %s",
                    -change, metric, before.get(metric), after.get(metric), fp32.name)
    return result


def _validation_split(info: dict[str, Any]) -> tuple[list[str] | None, list[str] | None, Any]:
    """The run's own validation split, rebuilt from its config (same files, same seeded split)."""
    from thawkit.config import make_config
    from thawkit.errors import ThawkitError
    from thawkit.tasks import get_task

    try:
        cfg = make_config({k: v for k, v in info["config"].items() if v is not None})
        data = get_task(cfg.task).load_data(cfg)
    except (ThawkitError, KeyError, OSError) as exc:
        log.info("int8 check skipped: %s", exc)
        return None, None, None
    frame = data.validation
    pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
    return frame["text"].tolist(), pairs, np.asarray(frame["labels"].tolist())


__all__ = ["export_onnx", "ONNX_FILE"]
