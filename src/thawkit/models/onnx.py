"""Running an exported ONNX classifier through onnxruntime (shared by export's checks and the ONNX run)."""

from __future__ import annotations

from typing import Any

import numpy as np


def onnx_logits(session: Any, tokenizer: Any, names: list[str], texts: list[str], pairs: list[str] | None, max_length: int,
                batch_size: int = 64) -> np.ndarray:
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], pairs[start : start + batch_size] if pairs is not None else None,
                          truncation=True, max_length=max_length, padding=True, return_tensors="np")
        chunks.append(session.run(["logits"], {k: batch[k].astype(np.int64) for k in names})[0])
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
