"""A trained run: load it, predict with it, evaluate it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawkit.rundir import METRICS_FILE, read_history, read_run_files


class Run:
    """A fine-tuned classifier with its tokenizer, label names and run facts."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: list[str],
        multi_label: bool,
        info: dict[str, Any],
        path: Path | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = labels
        self.multi_label = multi_label
        self.info = info
        self.path = path

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "Run":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        run, info, labels = read_run_files(path)
        if info.get("task") == "question-answering":
            from thawkit.tasks.qa import QARun

            return QARun.load(run, info)  # type: ignore[return-value]
        if info.get("task") == "sentence-similarity":
            from thawkit.tasks.similarity import SimilarityRun

            return SimilarityRun.load(run, info)  # type: ignore[return-value]
        if info.get("task") == "token-classification":
            from thawkit.tasks.ner import NerRun

            return NerRun.load(run, info, labels["labels"])  # type: ignore[return-value]
        tokenizer = AutoTokenizer.from_pretrained(str(run))
        from thawkit.models.pooled import HEAD_CONFIG, PooledHeadClassifier

        if (run / HEAD_CONFIG).exists():
            model = PooledHeadClassifier.from_pretrained(run)
        elif (run / "adapter_config.json").exists():
            from peft import PeftModel

            from thawkit.models.backbone import load_sequence_classifier

            base = load_sequence_classifier(
                info["config"]["model"],
                num_labels=len(labels["labels"]),
                id2label=dict(enumerate(labels["labels"])),
                problem_type=info["problem_type"],
            )
            model = PeftModel.from_pretrained(base, str(run))
        else:  # a standard Hugging Face model folder
            model = AutoModelForSequenceClassification.from_pretrained(str(run))
        model.eval()
        return cls(model, tokenizer, labels["labels"], labels["multi_label"], info, path=run)

    @property
    def metrics(self) -> dict[str, Any]:
        if self.path is None or not (self.path / METRICS_FILE).exists():
            return {}
        return json.loads((self.path / METRICS_FILE).read_text(encoding="utf-8"))

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per evaluation during training (the learning curve)."""
        records = read_history(self.path) if self.path is not None else []
        return [r for r in records if "type" not in r]

    @property
    def forgetting(self) -> dict[str, Any] | None:
        return self.metrics.get("forgetting")

    # -- inference -------------------------------------------------------------------------
    @torch.inference_mode()
    def logits(self, texts: list[str], text_pairs: list[str] | None = None, batch_size: int = 64) -> np.ndarray:
        """Raw logits (n, num_labels), in batches, in eval mode."""
        max_length = int(self.info.get("config", {}).get("max_length", 128))
        self.model.eval()
        device = next(self.model.parameters()).device
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[start : start + batch_size],
                text_pairs[start : start + batch_size] if text_pairs is not None else None,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            chunks.append(self.model(**batch).logits.float().cpu().numpy())
        if not chunks:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(chunks)

    def predict(
        self, texts: list[str] | str, text_pairs: list[str] | str | None = None, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        """One dict per text: ``label`` (or ``labels`` for multi-label), ``score`` and all ``scores``."""
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(text_pairs, str):
            text_pairs = [text_pairs]
        logits = self.logits(texts, text_pairs, batch_size)
        results = []
        if self.multi_label:
            probs = 1.0 / (1.0 + np.exp(-logits))
            for row in probs:
                chosen = [self.labels[i] for i in np.flatnonzero(row >= 0.5)]
                results.append(
                    {"labels": chosen, "scores": {name: float(p) for name, p in zip(self.labels, row)}}
                )
        else:
            probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
            for row in probs:
                best = int(row.argmax())
                results.append(
                    {
                        "label": self.labels[best],
                        "score": float(row[best]),
                        "scores": {name: float(p) for name, p in zip(self.labels, row)},
                    }
                )
        return results

    def evaluate(
        self,
        data: str | Path,
        text_col: str | None = None,
        text_pair_col: str | None = None,
        label_col: str | None = None,
        batch_size: int = 64,
    ) -> dict[str, Any]:
        """Metrics on a labeled file, with the run's own column mapping as the default."""
        from thawkit.data.classification import load_eval_split
        from thawkit.engine.metrics import detailed_metrics

        config = self.info.get("config", {})
        frame = load_eval_split(
            data,
            labels=self.labels,
            multi_label=self.multi_label,
            text_col=text_col or self.info.get("text_col"),
            text_pair_col=text_pair_col or self.info.get("text_pair_col"),
            label_col=label_col or self.info.get("label_col"),
            label_sep=config.get("label_sep", ","),
        )
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        logits = self.logits(frame["text"].tolist(), pairs, batch_size)
        gold = np.array(frame["labels"].tolist())
        return detailed_metrics(logits, gold, self.labels, self.multi_label)

    def __repr__(self) -> str:
        return f"Run(path={self.path}, strategy={self.info.get('strategy')}, labels={self.labels})"
