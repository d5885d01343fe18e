"""`thawkit export RUN --onnx [--quantize int8]`: an ONNX folder that `predict`, `evaluate` and
`serve` run through onnxruntime (the task's own run class on ``models.onnx.OnnxModel``), checked
against PyTorch when it is written.

Every task: classification (logits), NER (per-token logits), QA (start/end logits), similarity
(the pooled embedding). Dynamic batch and sequence axes; every output compared with PyTorch on
real sentences at two batch shapes (max |diff| must be <= 1e-4, reported); int8 dynamic
quantization reports the validation-metric change on the run's own validation data and warns
above one point (small MiniLM models are known to lose accuracy under some int8 settings).
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
from thawkit.models.onnx import ONNX_FILE, OnnxModel
from thawkit.rundir import LABELS_FILE, RUN_FILE, check_destination, partial_dir_for, publish, write_json
from thawkit.tasks import load_checked, open_run

log = logging.getLogger("thawkit")

EXPORT_FILE = "export.json"
PARITY_TOLERANCE = 1e-4


def export_onnx(run_path: Path, out: Path, quantize: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    import torch

    task, run_dir, info, labels = open_run(run_path)
    if (run_dir / ONNX_FILE).exists():
        raise ConfigError(f"{run_path}: already an ONNX export; fix: export the PyTorch run it came from ({info.get('exported_from')})")
    if quantize not in (None, *QUANTIZATIONS):
        raise ConfigError(f"--quantize {quantize}: one of {', '.join(QUANTIZATIONS)} is offered; fix: --quantize int8 or drop it")
    check_destination(out, overwrite)
    run = load_checked(task, run_dir, info, labels)
    model = run.model
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    traced = task.onnx_module(model.eval())
    batches = _probe_batches(run.tokenizer, run.max_length, task.onnx_token_types)
    names = list(batches[0])
    outputs = dict(task.onnx_outputs)
    axes = {**{k: {0: "batch", 1: "sequence"} for k in names},
            **{name: dict(enumerate(dims)) for name, dims in outputs.items()}}
    partial = partial_dir_for(out)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with torch.inference_mode():
            torch.onnx.export(traced, tuple(torch.from_numpy(batches[0][k]) for k in names), str(partial / ONNX_FILE),
                              input_names=names, output_names=list(outputs), opset_version=17, dynamo=False, dynamic_axes=axes)
        parity = _parity(traced, OnnxModel(partial), batches)
        if parity > PARITY_TOLERANCE:
            raise RuntimeError(f"the ONNX model differs from PyTorch by {parity:.2e} (> {PARITY_TOLERANCE:g}); not exported")
        facts: dict[str, Any] = {"format": "onnx", "opset": 17, "inputs": names, "outputs": list(outputs),
                                 "parity_max_abs_diff": parity, "quantization": None,
                                 "parity_checked_on": f"{sum(len(b['input_ids']) for b in batches)} general-English "
                                                      f"{'sentence pairs' if task.onnx_token_types else 'sentences'}, two batch shapes"}
        run.tokenizer.save_pretrained(str(partial))
        write_json(partial / LABELS_FILE, labels)
        write_json(partial / RUN_FILE, {**info, "exported_from": str(run_dir), "onnx": facts})
        if quantize is not None:
            facts["quantization"] = _quantize(task, info, labels, partial, run.tokenizer, run.max_length, quantize)
            write_json(partial / RUN_FILE, {**info, "exported_from": str(run_dir), "onnx": facts})
        write_json(partial / EXPORT_FILE, facts)
        if (run_dir / "metrics.json").exists():
            shutil.copy2(run_dir / "metrics.json", partial / "metrics.json")
        if (run_dir / "config.json").exists():  # optimum's ORTModelFor... read the architecture and labels from it
            shutil.copy2(run_dir / "config.json", partial / "config.json")
        from thawkit.engine.core.artifacts import model_card

        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")) if (run_dir / "metrics.json").exists() else {}
        card_info = {**info, "config": {**info.get("config", {}), "out": str(out)}}
        (partial / "README.md").write_text(model_card(card_info, metrics, task, False, "onnx"), encoding="utf-8")
        publish(partial, out, overwrite)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {**facts, "path": str(out)}


def _probe_batches(tokenizer: Any, max_length: int, pairs: bool) -> list[dict[str, np.ndarray]]:
    """Real inputs at two batch shapes (4 and 16 texts, padded differently)."""
    from thawkit.data.probe import general_sentences

    texts = general_sentences()[:40]
    batches = []
    for start, size in ((0, 4), (4, 16)):
        first, second = texts[start : start + size], texts[start + 20 : start + 20 + size]
        batches.append(dict(tokenizer(first, second if pairs else None, padding=True, truncation=True,
                                      max_length=max_length, return_tensors="np")))
    keep = ("input_ids", "attention_mask", "token_type_ids") if pairs else ("input_ids", "attention_mask")
    return [{k: b[k].astype(np.int64) for k in keep if k in b} for b in batches]


def _parity(traced: Any, exported: OnnxModel, batches: list[dict[str, np.ndarray]]) -> float:
    import torch

    worst = 0.0
    with torch.inference_mode():
        for batch in batches:
            reference = traced(*(torch.from_numpy(batch[k]) for k in batch))
            found = exported.run(**batch)
            for name, value in zip(exported.output_names, reference):
                worst = max(worst, float(np.abs(value.float().numpy() - found[name]).max()))
    return worst


QUANTIZATIONS = ("int8", "int8-dynamic")
CALIBRATION_TEXTS = 128


def _calibration_texts(task: Any, info: dict[str, Any]) -> tuple[list[str], str]:
    """Up to 128 of the run's own training texts (what it will see), else general-English sentences."""
    from thawkit.config import make_config
    from thawkit.data.probe import general_sentences
    from thawkit.errors import ThawkitError

    try:
        cfg = make_config({k: v for k, v in info["config"].items() if v is not None})
        texts = task.sample_texts(task.load_data(cfg), limit=CALIBRATION_TEXTS)
        if texts:
            return list(texts)[:CALIBRATION_TEXTS], f"{min(len(texts), CALIBRATION_TEXTS)} training texts of the run"
    except (ThawkitError, KeyError, OSError) as exc:
        log.info("int8 calibration on general-English sentences: the run's training data is not readable (%s)", exc)
    texts = general_sentences()[:CALIBRATION_TEXTS]
    return texts, f"{len(texts)} general-English sentences (the training data was not readable)"


def _quantize_static(fp32: Path, target: Path, tokenizer: Any, max_length: int, inputs: list[str], texts: list[str]) -> None:
    """int8 with activation scales fixed by calibration: QDQ on the linear layers only (MatMul/Gemm
    with a weight; the attention's activation x activation products stay fp32), weights int8 per
    channel, activations uint8 (the fast u8s8 kernels of x86). Measured on SST-2 (MiniLM, 2k training
    examples, docs/serving.md): -0.56 points of macro-F1 and the fastest batched path; quantizing every
    MatMul with int8 activations lost 3.4 points and ran several times slower."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    def row(text: str) -> dict[str, np.ndarray]:
        encoded = {k: v.astype(np.int64) for k, v in tokenizer([text], truncation=True, max_length=max_length, return_tensors="np").items()}
        encoded.setdefault("token_type_ids", np.zeros_like(encoded["input_ids"]))
        return {name: encoded[name] for name in inputs}

    class Texts(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter([row(text) for text in texts])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.rows, None)

    graph = onnx.load(str(fp32)).graph
    weights = {initializer.name for initializer in graph.initializer}
    products = [node.name for node in graph.node if node.op_type == "MatMul" and not any(i in weights for i in node.input)]
    quantize_static(str(fp32), str(target), Texts(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul", "Gemm"],
                    nodes_to_exclude=products, per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


class _NoPreprocessingHint(logging.Filter):
    """onnxruntime's quantizers suggest shape-inference pre-processing on the root logger at every
    call; thawkit's graph is exported with static shapes known, so the line is noise on stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantize(task: Any, info: dict[str, Any], labels: dict[str, Any], folder: Path, tokenizer: Any, max_length: int,
              kind: str) -> dict[str, Any]:
    """int8: static (activation scales calibrated on the run's training texts, batched);
    ``int8-dynamic``: scales computed at run time, each row run alone so a text's scores never
    depend on its batch. The validation metric before and after, measured by the task's own run
    class on both graphs."""
    fp32 = folder / "model-fp32.onnx"
    (folder / ONNX_FILE).rename(fp32)
    hint = _NoPreprocessingHint()
    logging.getLogger().addFilter(hint)
    try:
        result = _write_quantized(task, info, folder, fp32, tokenizer, max_length, kind)
    finally:
        logging.getLogger().removeFilter(hint)
    run = task.load_run(folder, info, labels)  # the int8 graph
    measured = _validation_metric(task, run, info)
    if measured is None:
        result.update({"metric_change_points": None, "note": "the run's validation data is not readable from here; not measured"})
        return result
    metric, after, examples = measured
    run.model = OnnxModel(folder, fp32.name)
    _, before, _ = _validation_metric(task, run, info) or (metric, None, 0)
    change = (after - before) * 100 if after is not None and before is not None else None
    result.update({"metric": metric, "fp32": before, "int8": after, "validation_examples": examples,
                   "metric_change_points": round(change, 3) if change is not None else None})
    if change is not None and change < -1.0:
        log.warning("int8 quantization lost %.2f points of validation %s (%.4f -> %.4f); the fp32 model is kept as %s",
                    -change, metric, before, after, fp32.name)
    return result


def _write_quantized(task: Any, info: dict[str, Any], folder: Path, fp32: Path, tokenizer: Any, max_length: int,
                     kind: str) -> dict[str, Any]:
    """The int8 graph as model.onnx, and what kind it is."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if kind == "int8-dynamic":
        quantize_dynamic(str(fp32), str(folder / ONNX_FILE), weight_type=QuantType.QInt8)
        result: dict[str, Any] = {"kind": "int8 dynamic (weights int8, activation scales computed at run time; each row runs "
                                          "alone, unpadded, so a text's scores do not depend on its batch)", "fp32_model": fp32.name,
                                  "row_by_row": True}
        write_json(folder / EXPORT_FILE, {"quantization": result})  # the int8 session below reads it
    else:
        texts, source = _calibration_texts(task, info)
        _quantize_static(fp32, folder / ONNX_FILE, tokenizer, max_length, OnnxModel(folder, fp32.name).input_names, texts)
        result = {"kind": "int8 static (QDQ: MatMul/Gemm weights per channel, activation scales calibrated; batch-independent)",
                  "calibration": source, "fp32_model": fp32.name}
    return result


def _validation_metric(task: Any, run: Any, info: dict[str, Any]) -> tuple[str, float | None, int] | None:
    """(metric, value, examples) on the run's own validation data (``Task.validation_metrics``)."""
    from thawkit.config import make_config
    from thawkit.errors import ThawkitError

    try:
        cfg = make_config({k: v for k, v in info["config"].items() if v is not None})
    except (ThawkitError, KeyError) as exc:
        log.info("int8 check skipped: %s", exc)
        return None
    measured = task.validation_metrics(run, cfg)
    if measured is None:
        return None
    metric = info.get("metric") or task.default_metric
    values, examples = measured
    return metric, values.get(metric), examples


__all__ = ["export_onnx", "ONNX_FILE"]
