"""A trained classifier run: logits (windowed for --long-text window runs), probabilities,
embeddings of a pooled-feature body, predictions and evaluation on a labeled file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawkit.data.classification import load_eval_split
from thawkit.errors import ConfigError
from thawkit.tasks.base import RunBase
from thawkit.tasks.classification_metrics import detailed_metrics, split_slices
from thawkit.tasks.classification_windows import pool_windows, window_tokens


class ClassificationRun(RunBase):
    """A fine-tuned classifier: ``predict`` gives a label (or labels) with probabilities."""

    slices = True  # evaluate takes slice_cols

    @torch.inference_mode()
    def logits(self, texts: list[str], text_pairs: list[str] | None = None, batch_size: int = 64,
               adapter_names: list[str] | None = None) -> np.ndarray:
        """Raw logits (n, num_labels), in batches, in eval mode. ``adapter_names`` (a PEFT model
        holding several adapters): the adapter, and its head, for each text, in one forward pass."""
        self.model.eval()
        device = next(self.model.parameters()).device
        config = self.info.get("config", {})
        if config.get("long_text") == "window" and text_pairs is None:
            return self._window_logits(texts, batch_size, adapter_names, device, int(config["window_overlap"]),
                                       str(config["window_pooling"]))
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[start : start + batch_size],
                text_pairs[start : start + batch_size] if text_pairs is not None else None,
                truncation=True, max_length=self.max_length, padding=True, return_tensors="pt",
            ).to(device)
            routing = {"adapter_names": adapter_names[start : start + batch_size]} if adapter_names is not None else {}
            chunks.append(self.model(**batch, **routing).logits.float().cpu().numpy())
        if not chunks:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(chunks)

    def _window_logits(self, texts: list[str], batch_size: int, adapter_names: list[str] | None, device: Any, overlap: int,
                       pooling: str) -> np.ndarray:
        """A windowed run's logits: every text cut into the windows it trained on, each text's pooled."""
        columns, mapping = window_tokens(self.tokenizer, texts, self.max_length, overlap)
        rows = [{key: values[i] for key, values in columns.items()} for i in range(len(mapping))]
        chunks = []
        for start in range(0, len(rows), batch_size):
            batch = self.tokenizer.pad(rows[start : start + batch_size], return_tensors="pt").to(device)
            routing = {"adapter_names": [adapter_names[t] for t in mapping[start : start + batch_size]]} if adapter_names is not None else {}
            chunks.append(self.model(**batch, **routing).logits.float().cpu().numpy())
        if not chunks:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return pool_windows(np.concatenate(chunks), mapping, len(texts), pooling)

    def probabilities(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(n, num_labels): softmax over labels, or each label's sigmoid for multi-label."""
        logits = torch.from_numpy(self.logits(texts, None, batch_size))
        return (torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)).numpy()

    @torch.inference_mode()
    def embeddings(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(n, hidden) what a pooled-feature head reads (the run's own body, pooling and normalisation)."""
        from thawkit.models.pooled import embed_in_length_order

        model = self.model
        if not hasattr(model, "features"):
            raise ConfigError("this run has no pooled-feature body to embed with; fix: pass --model ENCODER")

        def batch(chunk: list[str]) -> torch.Tensor:
            inputs = self.tokenizer(chunk, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
            states = model.backbone(**inputs).last_hidden_state
            return torch.nn.functional.normalize(model.features(states, inputs["attention_mask"]), dim=-1)

        model.eval()
        return embed_in_length_order(texts, batch_size, batch)

    def predict(self, texts: list[str] | str, text_pairs: list[str] | str | None = None, batch_size: int = 64) -> list[dict[str, Any]]:
        """One dict per text: ``label`` (or ``labels`` for multi-label), ``score`` and all ``scores``."""
        texts = [texts] if isinstance(texts, str) else texts
        text_pairs = [text_pairs] if isinstance(text_pairs, str) else text_pairs
        return self.predictions_from_logits(self.logits(texts, text_pairs, batch_size))

    def predictions_from_logits(self, logits: np.ndarray) -> list[dict[str, Any]]:
        """``predict``'s answers from logits computed elsewhere (a mixed-adapter batch)."""
        if self.multi_label:
            probs = 1.0 / (1.0 + np.exp(-logits))
            return [{"labels": [self.labels[i] for i in np.flatnonzero(row >= 0.5)],
                     "scores": {name: float(p) for name, p in zip(self.labels, row)}} for row in probs]
        probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
        return [{"label": self.labels[int(row.argmax())], "score": float(row.max()),
                 "scores": {name: float(p) for name, p in zip(self.labels, row)}} for row in probs]

    def evaluate(self, data: str | Path, text_col: str | None = None, text_pair_col: str | None = None,
                 label_col: str | None = None, batch_size: int = 64, slice_cols: list[str] | None = None, **_: Any) -> dict[str, Any]:
        """Metrics on a labeled file, with the run's own column mapping as the default; ``slice_cols``:
        the same metrics per value of each of these columns."""
        frame = load_eval_split(
            data, labels=self.labels, multi_label=self.multi_label,
            text_col=text_col or self.info.get("text_col"), text_pair_col=text_pair_col or self.info.get("text_pair_col"),
            label_col=label_col or self.info.get("label_col"), label_sep=self.info.get("config", {}).get("label_sep", ","),
            label_values=self.info.get("label_values"), slice_cols=slice_cols or (),
        )
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        logits = self.logits(frame["text"].tolist(), pairs, batch_size)
        gold = np.array(frame["labels"].tolist())
        return {**detailed_metrics(logits, gold, self.labels, self.multi_label), **split_slices(frame, logits, gold, self.multi_label)}

    def prediction_reference(self) -> np.ndarray | None:
        """Predicted-label counts on the validation split: metrics.json's confusion matrix, column sums
        (multi-label: each label's false and true positives)."""
        matrix = ((self.metrics.get("validation") or {}).get("confusion_matrix") or {}).get("matrix")
        if matrix is None:
            return None
        counts = np.asarray(matrix, dtype=float)
        return counts[:, :, 1].sum(axis=1) if self.multi_label else counts.sum(axis=0)

    def predicted_label_ids(self, answers: list[Any]) -> list[int]:
        index = {name: i for i, name in enumerate(self.labels)}
        if self.multi_label:
            return [index[name] for answer in answers for name in answer["labels"]]
        return [index[answer["label"]] for answer in answers]

    def headline(self) -> str:
        validation = self.metrics.get("validation", {})
        return (f"classification {self.info.get('strategy')}: validation accuracy {validation.get('accuracy', float('nan')):.4f}, "
                f"macro-F1 {validation.get('macro_f1', float('nan')):.4f}")


# The name users and older code know.
Run = ClassificationRun
