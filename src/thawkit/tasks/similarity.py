"""Sentence similarity with a bi-encoder: one shared encoder, mean pooling, cosine similarity.

Scored pairs (e.g. STS-B, 0-5) or binary pairs train with a cosine-similarity regression loss;
positive-only pairs with the multiple-negatives ranking loss (in-batch negatives). The run is saved
in the sentence-transformers layout, so ``SentenceTransformer(run_dir)`` loads it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Union

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from thawkit.data.pairs import load_pair_data, read_pairs
from thawkit.errors import ConfigError, DataError
from thawkit.models.backbone import checkpoint_pooling, from_pretrained_checked
from thawkit.models.pooled import pool
from thawkit.rundir import write_json
from thawkit.tasks.base import RunBase, Task, TaskData, register_task
from thawkit.tasks.roles import Route, Rule, ServedCall, ServeRequest
from thawkit.tasks.roles.advice import MEMORY_RULE, budget_short
from thawkit.tasks.roles.serving import RequestError

if TYPE_CHECKING:
    from thawkit.config import TrainConfig


class BiEncoder(nn.Module):
    """``backbone`` shared by both sides; returns the cosine similarities as ``logits``."""

    def __init__(self, backbone: nn.Module, loss: str, pooling: str = "mean") -> None:
        super().__init__()
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # mean pooling reads the token states; an unused pooler would pose as a head
        self.backbone = backbone
        self.config = backbone.config
        self.loss_kind = loss
        self.pooling = pooling  # the checkpoint's own (sentence-transformers 1_Pooling), else mean

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return pool(states, attention_mask, self.pooling)

    def forward(self, input_ids_a: torch.Tensor, attention_mask_a: torch.Tensor, input_ids_b: torch.Tensor,
                attention_mask_b: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        a = nn.functional.normalize(self.embed(input_ids_a, attention_mask_a), dim=-1)  # (batch, hidden)
        b = nn.functional.normalize(self.embed(input_ids_b, attention_mask_b), dim=-1)
        cosine = (a * b).sum(-1)  # (batch,)
        loss = None
        if labels is not None:
            if self.loss_kind == "mnrl":  # each a_i against every b_j in the batch; b_i is the answer
                scores = a @ b.T * 20.0
                loss = nn.functional.cross_entropy(scores, torch.arange(len(a), device=a.device))
            else:
                loss = nn.functional.mse_loss(cosine, labels.float())
        return SequenceClassifierOutput(loss=loss, logits=cosine)


class PairCollator:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for side in ("a", "b"):
            padded = self.tokenizer.pad([{"input_ids": f[f"input_ids_{side}"], "attention_mask": f[f"attention_mask_{side}"]} for f in features],
                                        return_tensors="pt")
            batch[f"input_ids_{side}"], batch[f"attention_mask_{side}"] = padded["input_ids"], padded["attention_mask"]
        batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
        return batch


def tokenize_pairs(frame: Any, tokenizer: Any, max_length: int, max_score: float) -> Any:
    from datasets import Dataset

    a = tokenizer(frame["a"].tolist(), truncation=True, max_length=max_length)
    b = tokenizer(frame["b"].tolist(), truncation=True, max_length=max_length)
    labels = (frame["score"] / max_score).tolist() if "score" in frame else [1.0] * len(frame)
    return Dataset.from_dict({"input_ids_a": a["input_ids"], "attention_mask_a": a["attention_mask"],
                              "input_ids_b": b["input_ids"], "attention_mask_b": b["attention_mask"], "labels": labels})


def similarity_metrics(cosine: np.ndarray, gold: np.ndarray, kind: str) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    if kind == "positive":
        return {"mean_cosine": float(np.mean(cosine))}
    result = {"spearman": float(spearmanr(cosine, gold).statistic), "pearson": float(pearsonr(cosine, gold).statistic)}
    if kind == "binary":
        from sklearn.metrics import average_precision_score

        thresholds = np.unique(cosine)
        accuracy = max(float(np.mean((cosine >= t) == (gold >= 0.5))) for t in thresholds)
        result.update({"accuracy": accuracy, "average_precision": float(average_precision_score(gold >= 0.5, cosine))})
    return result


class SimilarityRun(RunBase):
    """``predict(a, b)`` -> cosine similarity; ``embed(texts)`` -> normalised mean-pooled vectors."""

    @torch.inference_mode()
    def embed(self, texts: list[str] | str, batch_size: int = 64) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        self.model.eval()
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            chunks.append(nn.functional.normalize(self.model.embed(batch["input_ids"], batch["attention_mask"]), dim=-1).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 0))

    def similarity(self, a: list[str] | str, b: list[str] | str) -> list[float]:
        left, right = self.embed(a), self.embed(b)
        return [float(x) for x in (left * right).sum(-1)]

    def predict(self, texts: list[str] | str, text_pairs: list[str] | str | None = None, batch_size: int = 64) -> list[dict[str, Any]]:
        if text_pairs is None:
            raise ConfigError("similarity needs two texts; fix: pass --pair TEXT (or text_pairs=[...])")
        texts = [texts] if isinstance(texts, str) else texts
        pairs = [text_pairs] * len(texts) if isinstance(text_pairs, str) else text_pairs
        return [{"text": t, "pair": p, "similarity": s} for t, p, s in zip(texts, pairs, self.similarity(texts, pairs))]


    def evaluate(self, data: str | Path, text_col: str | None = None, text_pair_col: str | None = None,
                 label_col: str | None = None, **_: Any) -> dict[str, Any]:
        """Metrics on a scored (or binary) pair file, with the run's own columns as the default."""
        config = self.info.get("config", {})
        frame, score = read_pairs(Path(data), text_col or config.get("text_col"), text_pair_col or config.get("text_pair_col"),
                              label_col or config.get("label_col"))
        if score is None:
            raise DataError(f"{data}: no score column; fix: pass --label-col naming the scores")
        cosine = np.asarray(self.similarity(frame["a"].tolist(), frame["b"].tolist()))
        kind = "binary" if set(frame["score"].unique().tolist()) <= {0.0, 1.0} else "scored"
        return {**similarity_metrics(cosine, frame["score"].to_numpy(dtype=float), kind), "num_pairs": len(frame)}

    def headline(self) -> str:
        validation = self.metrics.get("validation", {})
        return (f"similarity {self.info.get('strategy')} ({self.info.get('pair_kind')} pairs): validation "
                + ", ".join(f"{k} {v:.4f}" for k, v in validation.items() if isinstance(v, float) and k != "loss")
                + " (the run also loads with sentence_transformers.SentenceTransformer)")


def _save_sentence_transformers_layout(folder: Path, backbone: Any, max_length: int, pooling: str = "mean") -> None:
    """The encoder plus the pooling/normalize module files sentence-transformers reads (the tokenizer is saved beside)."""
    backbone.save_pretrained(str(folder))
    hidden = int(getattr(backbone.config, "hidden_size", None) or backbone.config.dim)
    (folder / "1_Pooling").mkdir(exist_ok=True)
    write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    (folder / "2_Normalize").mkdir(exist_ok=True)
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})



class EmbedRequest(ServeRequest):
    inputs: Union[str, list[str]]
    normalize: bool = True


class OpenAIEmbeddingRequest(ServeRequest):
    input: Union[str, list[str]]
    encoding_format: Literal["float"] = "float"
    user: str | None = None


class SimilarityInputs(BaseModel):
    source_sentence: str
    sentences: list[str]


class SimilarityRequest(ServeRequest):
    inputs: SimilarityInputs


async def _embed(body: EmbedRequest, call: ServedCall) -> list[list[float]]:
    if not body.normalize:
        raise RequestError(422, "normalize: false is not offered; similarity runs embed normalised vectors (what they were trained to compare)")
    vectors, _ = await call.batch("embed", [body.inputs] if isinstance(body.inputs, str) else list(body.inputs))
    return vectors


async def _openai_embeddings(body: OpenAIEmbeddingRequest, call: ServedCall) -> dict[str, Any]:
    vectors, tokens = await call.batch("embed", [body.input] if isinstance(body.input, str) else list(body.input))
    return {"object": "list", "model": call.name,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


async def _similarity(body: SimilarityRequest, call: ServedCall) -> list[float]:
    vectors, _ = await call.batch("embed", [body.inputs.source_sentence, *body.inputs.sentences])
    source = vectors[0]
    return [float(sum(a * b for a, b in zip(source, v))) for v in vectors[1:]]


@register_task("similarity")
class SimilarityTask(Task):
    """A bi-encoder has no task head: strategies train (part of) the encoder itself."""

    run_type = "sentence-similarity"
    own_settings = (("--score-scale", "score_scale"),)
    default_metric = "spearman"
    metrics = ("spearman", "pearson", "accuracy", "average_precision", "mean_cosine", "loss")
    cacheable = False  # two inputs per example
    saves_merged_weights = True  # sentence-transformers reads plain weights
    supports_distillation = True
    pipeline_tag = "sentence-similarity"
    stock_python = ('from sentence_transformers import SentenceTransformer\n'
                    'model = SentenceTransformer("{run}")\n'
                    'a, b = model.encode(["A plane takes off", "An airplane is taking off"], normalize_embeddings=True)\n'
                    'print(float(a @ b))')
    card_library = "sentence-transformers"
    usage_arguments = ("A plane takes off", "--pair", "An airplane is taking off")
    example_noun = "training pairs"

    def routes(self) -> tuple[Route, ...]:
        return (Route("/embed", EmbedRequest, _embed, "normalised embeddings (TEI schema)"),
                Route("/v1/embeddings", OpenAIEmbeddingRequest, _openai_embeddings, "embeddings (OpenAI schema)"),
                Route("/similarity", SimilarityRequest, _similarity, "cosine of a source sentence to each sentence"))

    def advisor_rules(self) -> list[Rule]:
        # Measured on STS-B, 2,000 pairs, MiniLM-L6 (docs/defaults.md).
        return [
            MEMORY_RULE,
            Rule("tiny-data", lambda s: s.num_examples < 100, "frozen",
                 "under ~100 scored pairs: the checkpoint's own embeddings (STS-B Spearman 0.810 untrained) are the safe choice"),
            Rule("budget-short", budget_short, "frozen",
                 "fine-tuning would exceed the time budget; the checkpoint's own embeddings need no training"),
            Rule("similarity", lambda s: True, "gradual",
                 "measured on STS-B (2,000 pairs): gradual Spearman 0.858, llrd 0.857, full 0.856, partial 0.856, LoRA 0.849, "
                 "untrained embeddings 0.810",
                 suggestions=("llrd and full were within 0.2 points; compare them with thawkit compare --task similarity",)),
        ]

    def distillation_soft_loss(self, student_logits: Any, teacher_logits: Any, labels: Any, temperature: float) -> Any:
        """The student's cosines regress onto the teacher's (the logits are cosines; no temperature)."""
        return nn.functional.mse_loss(student_logits.float(), teacher_logits.float())

    def teacher_targets(self, teacher: RunBase, data: TaskData, tokenizer: Any, cfg: "TrainConfig") -> list[Any]:
        """The teacher's cosine per training pair."""
        cosines = teacher.similarity(data.train["a"].tolist(), data.train["b"].tolist())  # type: ignore[attr-defined]
        return list(torch.tensor(cosines, dtype=torch.float32))

    def teacher_labelled(self, teacher: RunBase, path: Path, cfg: "TrainConfig") -> Any:
        """Unlabeled pairs (a table with two text columns) scored by the teacher's cosine."""
        pairs, _ = read_pairs(Path(path), cfg.text_col, cfg.text_pair_col, None, cfg.table_format())
        pairs["score"] = teacher.similarity(pairs["a"].tolist(), pairs["b"].tolist())  # type: ignore[attr-defined]
        return pairs

    def add_training_examples(self, data: TaskData, examples: Any) -> None:
        import pandas as pd

        if data.facts["pair_kind"] == "positive":
            raise ConfigError("--unlabeled needs scored pairs to extend (this data has positive pairs only); fix: drop --unlabeled")
        scale = data.facts["max_score"] if data.facts["pair_kind"] == "scored" else 1.0
        extra = examples.assign(score=examples["score"].clip(lower=0.0) * scale)
        data.train = pd.concat([data.train, extra[["a", "b", "score"]]], ignore_index=True)

    def speed_probe(self, run: RunBase, data: TaskData) -> Callable[[int], None]:
        texts = self.sample_texts(data, 256)

        def infer(count: int) -> None:
            run.embed(texts[:count], batch_size=32)  # type: ignore[attr-defined]

        return infer

    def load_data(self, cfg: "TrainConfig") -> TaskData:
        pairs = load_pair_data(cfg)
        return TaskData(pairs.train, pairs.validation, pairs.test, validation_source=pairs.validation_source,
                        facts={"pair_kind": pairs.kind, "max_score": pairs.max_score})

    def selection_metric(self, data: TaskData) -> str:
        return "mean_cosine" if data.facts["pair_kind"] == "positive" else "spearman"

    def build_model(self, cfg: "TrainConfig", data: TaskData, strategy: Any) -> nn.Module:
        from transformers import AutoModel

        checkpoint = checkpoint_pooling(cfg.model)
        data.facts["pooling"] = checkpoint.mode if checkpoint else "mean"
        return BiEncoder(from_pretrained_checked(AutoModel, cfg.model), "mnrl" if data.facts["pair_kind"] == "positive" else "cosine",
                         data.facts["pooling"])

    def encode(self, data: TaskData, split: str, tokenizer: Any, cfg: "TrainConfig") -> Any:
        return tokenize_pairs(data.split(split), tokenizer, cfg.max_length, data.facts["max_score"])

    def collator(self, tokenizer: Any) -> Any:
        return PairCollator(tokenizer)

    def sample_texts(self, data: TaskData, limit: int = 500) -> list[str]:
        return data.train["a"].tolist()[:limit]

    def metric_function(self, data: TaskData, split: str) -> Callable[[Any], dict[str, float]]:
        kind = data.facts["pair_kind"]
        return lambda prediction: similarity_metrics(np.asarray(prediction.predictions), np.asarray(prediction.label_ids), kind)

    def final_metrics(self, data: TaskData, split: str, output: Any) -> dict[str, Any]:
        return {**self.metric_function(data, split)(output), "num_pairs": len(data.split(split))}

    def save_model(self, model: nn.Module, folder: Path, base_model: str, max_length: int) -> None:
        _save_sentence_transformers_layout(folder, model.backbone, max_length, model.pooling)  # type: ignore[arg-type]

    def make_run(self, model: nn.Module, tokenizer: Any, data: TaskData, info: dict[str, Any], path: Path | None) -> RunBase:
        return SimilarityRun(model, tokenizer, info, path)

    onnx_outputs = {"embedding": ("batch",)}  # pooled, not normalised: the run normalises
    onnx_token_types = False

    def onnx_module(self, model: nn.Module) -> nn.Module:
        class Embed(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor]:
                return (self.model.embed(input_ids, attention_mask),)

        return Embed().eval()

    def load_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> RunBase:
        from transformers import AutoModel, AutoTokenizer

        from thawkit.models.onnx import exported_model

        model = exported_model(path)
        if model is None:
            checkpoint = checkpoint_pooling(str(path))
            model = BiEncoder(AutoModel.from_pretrained(str(path), use_safetensors=True), "cosine", checkpoint.mode if checkpoint else "mean").eval()
        return SimilarityRun(model, AutoTokenizer.from_pretrained(str(path)), info, path)
