"""Sentence similarity with a bi-encoder: one shared encoder, mean pooling, cosine similarity.

Scored pairs (e.g. STS-B, 0-5) or binary pairs train with a cosine-similarity regression loss;
positive-only pairs with the multiple-negatives ranking loss (in-batch negatives). The run is saved
in the sentence-transformers layout, so ``SentenceTransformer(run_dir)`` loads it too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from thawkit.config import TrainConfig
from thawkit.errors import ConfigError, DataError
from thawkit.models.pooled import pool
from thawkit.rundir import METRICS_FILE, write_json

SCORE_COLUMNS = ("score", "similarity", "label", "labels")


@dataclass
class PairData:
    train: Any
    validation: Any
    test: Any | None
    kind: str  # "scored", "binary" or "positive"
    max_score: float
    validation_source: str


def _pairs(path: Path, text_col: str | None, pair_col: str | None, score_col: str | None) -> tuple[Any, str | None]:
    from thawkit.data.classification import _check_texts, _pick_column
    from thawkit.data.tables import read_table

    frame = read_table(path, tsv_quoting=True)
    first = _pick_column(frame, path, text_col, ("sentence1", "text", "anchor", "query"), "--text-col")
    second = _pick_column(frame, path, pair_col, ("sentence2", "text_pair", "positive", "document"), "--text-pair-col")
    _check_texts(frame, path, first)
    _check_texts(frame, path, second)
    score = score_col if score_col is not None else next((c for c in SCORE_COLUMNS if c in frame.columns), None)
    if score_col is not None and score_col not in frame.columns:
        raise DataError(f"{path}: no column {score_col!r}; columns are: {', '.join(frame.columns)}; fix: pass --label-col with one of them")
    import pandas as pd

    out = pd.DataFrame({"a": frame[first].astype(str), "b": frame[second].astype(str)})
    if score is not None:
        values = pd.to_numeric(frame[score], errors="coerce")
        bad = [i for i, v in enumerate(values.tolist()) if v != v]
        if bad:
            raise DataError(f"{path}: non-numeric or missing score in column {score!r} at row {bad[0] + 1}; fix: numeric scores only")
        out["score"] = values.astype(float)
    return out, score


def load_pair_data(cfg: TrainConfig) -> PairData:
    train, score = _pairs(Path(cfg.data), cfg.text_col, cfg.text_pair_col, cfg.label_col)
    if score is None:
        kind, max_score = "positive", 1.0
    else:
        values = set(train["score"].unique().tolist())
        kind = "binary" if values <= {0.0, 1.0} else "scored"
        max_score = float(train["score"].max()) if kind == "scored" else 1.0
        if max_score <= 0:
            raise DataError(f"{cfg.data}: every score is 0 or below; fix: scores from 0 (unrelated) up")
    if cfg.validation is not None:
        validation, _ = _pairs(Path(cfg.validation), cfg.text_col, cfg.text_pair_col, cfg.label_col)
        source = str(cfg.validation)
    else:
        shuffled = train.sample(frac=1.0, random_state=cfg.split_seed if cfg.split_seed is not None else cfg.seed)
        cut = max(2, int(round(len(shuffled) * cfg.val_fraction)))
        validation, train = shuffled.iloc[:cut].reset_index(drop=True), shuffled.iloc[cut:].reset_index(drop=True)
        source = f"random {cfg.val_fraction:.0%} split of {cfg.data}"
    test = _pairs(Path(cfg.test), cfg.text_col, cfg.text_pair_col, cfg.label_col)[0] if cfg.test is not None else None
    return PairData(train, validation, test, kind, max_score, source)


class BiEncoder(nn.Module):
    """``backbone`` shared by both sides; returns the cosine similarities as ``logits``."""

    def __init__(self, backbone: nn.Module, loss: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        self.loss_kind = loss

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return pool(states, attention_mask, "mean")

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


class _WithoutHeadOnlyStage:
    """A bi-encoder has no task head, so a head-only first stage (gradual unfreezing) would train
    nothing: start one stage later, with the top layer thawed."""

    def __init__(self, strategy: Any) -> None:
        self.inner = strategy
        self.config = strategy.config
        self.name = getattr(strategy, "name", "")

    def num_stages(self, layout: Any) -> int:
        return self.inner.num_stages(layout) - 1

    def plan(self, layout: Any, stage: int) -> Any:
        return self.inner.plan(layout, stage + 1)

    def prepare(self, model: Any) -> Any:
        return model

    @property
    def stage_every_steps(self) -> int | None:
        return self.inner.stage_every_steps


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


class SimilarityRun:
    """``predict(a, b)`` -> cosine similarity; ``embed(texts)`` -> normalised mean-pooled vectors."""

    def __init__(self, model: BiEncoder, tokenizer: Any, info: dict[str, Any], path: Path | None = None) -> None:
        self.model, self.tokenizer, self.info, self.path = model, tokenizer, info, path
        self.labels: list[str] = []
        self.multi_label = False

    @classmethod
    def load(cls, path: Path, info: dict[str, Any]) -> "SimilarityRun":
        from transformers import AutoModel, AutoTokenizer

        return cls(BiEncoder(AutoModel.from_pretrained(str(path)), "cosine").eval(), AutoTokenizer.from_pretrained(str(path)), info, path)

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads((self.path / METRICS_FILE).read_text()) if self.path else {}

    @torch.inference_mode()
    def embed(self, texts: list[str] | str, batch_size: int = 64) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        self.model.eval()
        max_length = int(self.info.get("config", {}).get("max_length", 128))
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
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


def _save_sentence_transformers_layout(folder: Path, backbone: Any, max_length: int) -> None:
    """The encoder plus the pooling/normalize module files sentence-transformers reads (the tokenizer is saved beside)."""
    backbone.save_pretrained(str(folder))
    hidden = int(getattr(backbone.config, "hidden_size", None) or backbone.config.dim)
    (folder / "1_Pooling").mkdir(exist_ok=True)
    write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    (folder / "2_Normalize").mkdir(exist_ok=True)
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})


def train_similarity(cfg: TrainConfig) -> SimilarityRun:
    """The shared engine on pairs. The frozen-layer cache does not apply yet (two inputs per example)."""
    from transformers import AutoModel, set_seed

    from thawkit import api
    from thawkit.engine.loop import build_loop, prepare_controller, run_loop, write_run_files
    from thawkit.engine.trainability import set_requires_grad
    from thawkit.guards import GuardReport
    from thawkit.guards.learning_rate import check_learning_rate
    from thawkit.models.backbone import _from_pretrained, load_tokenizer
    from thawkit.models.layout import build_layout
    from thawkit.registry import get_strategy_class
    from thawkit.rundir import check_destination, default_run_dir, partial_dir_for

    final_dir = Path(cfg.out) if cfg.out is not None else default_run_dir(f"similarity-{cfg.strategy}")
    check_destination(final_dir, cfg.overwrite)
    partial_dir = partial_dir_for(final_dir)
    set_seed(cfg.seed)
    data = load_pair_data(cfg)
    metric = "mean_cosine" if data.kind == "positive" else "spearman"
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    strategy = get_strategy_class(cfg.strategy)(cfg.strategy_config())
    if getattr(strategy, "uses_pooled_head", False):
        raise ConfigError("pooled heads are for classification; similarity always mean-pools; fix: drop pooling/head options")
    backbone = _from_pretrained(AutoModel, cfg.model)
    if cfg.strategy == "lora":
        from peft import LoraConfig, get_peft_model

        from thawkit.strategies.lora import detect_target_modules

        options = strategy.config
        backbone = get_peft_model(backbone, LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                                                       target_modules=options.target_modules or detect_target_modules(backbone)))
    model = BiEncoder(backbone, "mnrl" if data.kind == "positive" else "cosine")
    guards = GuardReport(strict=cfg.strict)
    guards.add(check_learning_rate(cfg.strategy, cfg.resolved_lr()))
    layout = build_layout(model)
    if strategy.num_stages(layout) > 1 and strategy.plan(layout, 0).trainable_blocks(layout) == ["head"]:
        strategy = _WithoutHeadOnlyStage(strategy)
    layout, controller, ever_trainable = prepare_controller(strategy, model, cfg)
    args = api._training_arguments(cfg, partial_dir / "checkpoints", controller.num_stages > 1)
    is_main = args.process_index == 0
    train_ds = tokenize_pairs(data.train, tokenizer, cfg.max_length, data.max_score)
    val_ds = tokenize_pairs(data.validation, tokenizer, cfg.max_length, data.max_score)
    if is_main and partial_dir.exists():
        shutil.rmtree(partial_dir)

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        return similarity_metrics(np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids), data.kind)

    loop = build_loop(cfg, controller, args, train_ds, val_ds, PairCollator(tokenizer), tokenizer, compute_metrics, metric,
                      ever_trainable, group_by_length=False)
    trainer, history = loop.trainer, loop.history

    def evaluate_pretrained() -> None:
        # A frozen bi-encoder has no head to train: its embeddings are the pretrained ones.
        controller.enter(0, 0)
        history._training = True
        trainer.evaluate()
        history._training = False

    training_loss, train_seconds = run_loop(loop, partial_dir, is_main, None, evaluate_pretrained if cfg.strategy == "frozen" else None)
    model.eval()
    metrics: dict[str, Any] = {}
    splits = {"validation": val_ds}
    if data.test is not None:
        splits["test"] = tokenize_pairs(data.test, tokenizer, cfg.max_length, data.max_score)
    for split, dataset in splits.items():
        output = trainer.predict(dataset, metric_key_prefix=split)
        metrics[split] = {**similarity_metrics(np.asarray(output.predictions), np.asarray(output.label_ids), data.kind),
                          "num_pairs": len(dataset)}
    from thawkit import __version__

    info = {
        "thawkit_version": __version__, "task": "sentence-similarity", "strategy": cfg.strategy,
        "strategy_options": cfg.strategy_config().model_dump(), "base_model": cfg.model, "pair_kind": data.kind,
        "max_score": data.max_score, "metric": metric, "validation_source": data.validation_source,
        "num_train_examples": len(data.train), "num_validation_examples": len(data.validation),
        "learning_rate": cfg.resolved_lr(), "config": cfg.model_dump(mode="json"),
        **api._run_facts(trainer, controller, layout, loop.best, loop.time_limit, train_seconds, training_loss, args.world_size),
        "cache": {"used": False, "reason": "sentence similarity encodes two inputs per example; the cache does not apply yet"},
        "guards": guards.as_list(),
    }
    encoder = model.backbone
    if cfg.strategy == "lora":  # sentence-transformers loads plain weights: merge the adapter
        encoder = encoder.merge_and_unload()
        model = BiEncoder(encoder, model.loss_kind).eval()
    if is_main:
        write_run_files(cfg, partial_dir, final_dir, tokenizer, {"labels": [], "multi_label": False}, info, metrics,
                        history.records, lambda folder: _save_sentence_transformers_layout(folder, encoder, cfg.max_length))
    trainer.accelerator.wait_for_everyone()
    set_requires_grad(model, [])
    return SimilarityRun(model, tokenizer, info, final_dir)
