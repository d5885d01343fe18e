"""ONNX: the module export traces (a task's outputs as a tuple) and, at run time, an onnxruntime
session that answers like the PyTorch model it came from, so every task's run class (predict,
evaluate, serve) works on an exported folder unchanged."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ONNX_FILE = "model.onnx"


def outputs_as_tuple(model: Any, outputs: tuple[str, ...], token_types: bool = True) -> Any:
    """A module whose forward(input_ids, attention_mask[, token_type_ids]) returns the named
    outputs of ``model``'s output (``logits``; ``start_logits``, ``end_logits``) as a tuple."""
    import torch

    class Traced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_types and token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            output = self.model(**inputs)
            return tuple(getattr(output, name) for name in outputs)

    return Traced().eval()


class OnnxModel:
    """An exported graph behind the calls a run makes on its model: ``model(**batch)`` returns
    an object with the exported outputs as torch tensors (``.logits``, ``.start_logits``, ...),
    ``embed(input_ids, attention_mask)`` the ``embedding`` output; ``eval``/``parameters`` exist
    so the run's PyTorch code path needs no branch."""

    def __init__(self, path: Path, file: str = ONNX_FILE) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # No busy-waiting threads: a server's event loop and tokenizer share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(Path(path) / file), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        # outputs with a sequence axis (per-token logits), padded back when rows run one at a time
        self.per_token = {o.name: len(o.shape) > 1 and o.shape[1] == "sequence" for o in self.session.get_outputs()}
        self.row_by_row = file == ONNX_FILE and _runs_row_by_row(Path(path))

    def eval(self) -> "OnnxModel":
        return self

    def parameters(self) -> Any:
        import torch

        yield torch.zeros(0)  # the device the run puts its inputs on: the CPU

    def run(self, **inputs: Any) -> dict[str, np.ndarray]:
        """The outputs by name, for numpy or torch inputs (missing token types: zeros). A graph
        quantized dynamically runs each row alone, unpadded: its activation scales then come from
        that text only, so its scores do not depend on the batch it arrived in."""
        feeds = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None and name == "token_type_ids":
                value = np.zeros_like(np.asarray(_numpy(inputs["input_ids"])))
            feeds[name] = np.asarray(_numpy(value)).astype(np.int64)
        if not self.row_by_row or len(feeds["input_ids"]) <= 1 and "attention_mask" not in feeds:
            return dict(zip(self.output_names, self.session.run(None, feeds)))
        width = feeds["input_ids"].shape[1]
        lengths = feeds["attention_mask"].sum(1) if "attention_mask" in feeds else np.full(len(feeds["input_ids"]), width)
        rows = [self.session.run(None, {k: v[i : i + 1, : int(lengths[i])] for k, v in feeds.items()}) for i in range(len(lengths))]
        outputs = {}
        for index, name in enumerate(self.output_names):
            parts = [row[index] for row in rows]
            if self.per_token[name]:  # padding positions: a logit no position ever beats
                parts = [np.pad(p, [(0, 0), (0, width - p.shape[1])] + [(0, 0)] * (p.ndim - 2), constant_values=-1e4) for p in parts]
            outputs[name] = np.concatenate(parts)
        return outputs

    def __call__(self, **inputs: Any) -> Any:
        import torch

        return SimpleNamespace(**{name: torch.from_numpy(value) for name, value in self.run(**inputs).items()})

    def embed(self, input_ids: Any, attention_mask: Any, **_: Any) -> Any:
        return self(input_ids=input_ids, attention_mask=attention_mask).embedding


def _numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def _runs_row_by_row(folder: Path) -> bool:
    """export.json says the graph's activation scales are computed at run time (int8 dynamic)."""
    import json

    facts_file = folder / "export.json"
    try:
        facts = json.loads(facts_file.read_text(encoding="utf-8")) if facts_file.is_file() else {}
    except (OSError, ValueError):
        return False
    return bool(isinstance(facts, dict) and (facts.get("quantization") or {}).get("row_by_row"))


def exported_model(path: Path) -> OnnxModel | None:
    """The ONNX model of an exported run folder, or None for a PyTorch run."""
    return OnnxModel(path) if (Path(path) / ONNX_FILE).exists() else None
