"""Token classification (NER): IOB2 tags on the first sub-token of every word, seqeval metrics,
entity spans with character offsets at prediction time. Every strategy and the frozen-layer cache
apply (the cache keeps token-level states)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawkit.config import TrainConfig
from thawkit.data.ner import NerData, chunk_and_align, load_ner_data, read_ner_file
from thawkit.errors import ConfigError
from thawkit.rundir import METRICS_FILE

_WORD = re.compile(r"\S+")


def tokenize_sentences(sentences: list[tuple[list[str], list[str]]], tokenizer: Any, max_length: int, labels: list[str]) -> Any:
    from datasets import Dataset

    label_to_id = {label: i for i, label in enumerate(labels)}
    rows = [feature for sentence in sentences for feature in chunk_and_align(sentence, tokenizer, max_length, label_to_id)]
    return Dataset.from_list(rows)


def _tag_sequences(predictions: np.ndarray, label_ids: np.ndarray, labels: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    gold, pred = [], []
    for row_pred, row_gold in zip(predictions, label_ids):
        keep = row_gold != -100
        gold.append([labels[i] for i in row_gold[keep]])
        pred.append([labels[i] for i in row_pred[keep]])
    return gold, pred


def ner_scalar_metrics(logits: np.ndarray, label_ids: np.ndarray, labels: list[str]) -> dict[str, float]:
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    gold, pred = _tag_sequences(logits.argmax(-1), label_ids, labels)
    return {
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
    }


def ner_detailed_metrics(logits: np.ndarray, label_ids: np.ndarray, labels: list[str]) -> dict[str, Any]:
    from seqeval.metrics import classification_report

    result: dict[str, Any] = ner_scalar_metrics(logits, label_ids, labels)
    gold, pred = _tag_sequences(logits.argmax(-1), label_ids, labels)
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    result["per_type"] = {
        name: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]), "support": int(v["support"])}
        for name, v in report.items()
        if name not in ("micro avg", "macro avg", "weighted avg")
    }
    result["macro_f1"] = float(report.get("macro avg", {}).get("f1-score", 0.0))
    result["num_sentences"] = int(len(gold))
    return result


def entities_from_tags(words: list[tuple[str, int, int]], tags: list[str], scores: list[float]) -> list[dict[str, Any]]:
    """IOB2 tags over words (text, start, end) -> entity spans with character offsets."""
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for (word, start, end), tag, score in zip(words, tags, scores):
        if tag.startswith("B-") or (tag.startswith("I-") and (current is None or current["type"] != tag[2:])):
            current = {"type": tag[2:], "start": start, "end": end, "scores": [score]}
            entities.append(current)
        elif tag.startswith("I-") and current is not None:
            current["end"] = end
            current["scores"].append(score)
        else:
            current = None
    for entity in entities:
        entity["score"] = float(np.mean(entity.pop("scores")))
    return entities


class NerRun:
    """A trained token classifier: ``predict(text)`` returns entity spans with character offsets."""

    def __init__(self, model: Any, tokenizer: Any, labels: list[str], info: dict[str, Any], path: Path | None = None) -> None:
        self.model, self.tokenizer, self.labels, self.info, self.path = model, tokenizer, labels, info, path
        self.multi_label = False

    @classmethod
    def load(cls, path: Path, info: dict[str, Any], labels: list[str]) -> "NerRun":
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if (path / "adapter_config.json").exists():
            from peft import PeftModel

            from thawkit.models.backbone import _from_pretrained

            base = _from_pretrained(AutoModelForTokenClassification, info["config"]["model"], num_labels=len(labels),
                                    id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
            model = PeftModel.from_pretrained(base, str(path))
        else:
            model = AutoModelForTokenClassification.from_pretrained(str(path))
        return cls(model.eval(), tokenizer, labels, info, path)

    @property
    def metrics(self) -> dict[str, Any]:
        import json

        return json.loads((self.path / METRICS_FILE).read_text()) if self.path else {}

    @torch.inference_mode()
    def word_predictions(self, words: list[str]) -> tuple[list[str], list[float]]:
        """A tag and its probability per word (the first sub-token's prediction), chunked like training."""
        max_length = int(self.info.get("config", {}).get("max_length", 128))
        label_to_id = {label: i for i, label in enumerate(self.labels)}
        features = chunk_and_align((words, ["O"] * len(words)), self.tokenizer, max_length, label_to_id)
        tags, scores = [], []
        self.model.eval()
        device = next(self.model.parameters()).device
        for feature in features:
            inputs = {k: torch.tensor([v], device=device) for k, v in feature.items() if k != "labels"}
            probs = torch.softmax(self.model(**inputs).logits[0].float(), -1)
            for position, label in enumerate(feature["labels"]):
                if label != -100:  # the first sub-token of a word
                    best = int(probs[position].argmax())
                    tags.append(self.labels[best])
                    scores.append(float(probs[position, best]))
        return tags, scores

    def predict(self, texts: list[str] | str, text_pairs: Any = None, batch_size: int = 32) -> list[dict[str, Any]]:
        if isinstance(texts, str):
            texts = [texts]
        results = []
        for text in texts:
            words = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
            tags, scores = self.word_predictions([w for w, _, _ in words]) if words else ([], [])
            entities = entities_from_tags(words, tags, scores)
            for entity in entities:
                entity["text"] = text[entity["start"] : entity["end"]]
            results.append({"text": text, "entities": entities})
        return results

    def evaluate(self, data: str | Path, **_: Any) -> dict[str, Any]:
        sentences = read_ner_file(data)
        label_to_id = {label: i for i, label in enumerate(self.labels)}
        gold, pred = [], []
        for words, tags in sentences:
            unseen = [t for t in tags if t not in label_to_id]
            if unseen:
                raise ConfigError(f"{data}: tag {unseen[0]!r} is not one the model was trained on; fix: drop those sentences")
            predicted, _ = self.word_predictions(words)
            gold.append(tags)
            pred.append(predicted)
        from seqeval.metrics import f1_score, precision_score, recall_score

        return {"f1": float(f1_score(gold, pred, zero_division=0)), "precision": float(precision_score(gold, pred, zero_division=0)),
                "recall": float(recall_score(gold, pred, zero_division=0)), "num_sentences": len(sentences)}


def train_ner(cfg: TrainConfig) -> NerRun:
    """The same engine as classification (strategies, stages, cache, guards, best state), on tokens."""
    from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification, set_seed

    from thawkit import api
    from thawkit.engine.cached_training import SwitchableCollator, SwitchableDataset, sorted_order
    from thawkit.engine.loop import build_loop, prepare_controller, run_loop, write_run_files
    from thawkit.engine.trainability import set_requires_grad
    from thawkit.guards import GuardReport
    from thawkit.guards.learning_rate import check_learning_rate
    from thawkit.guards.overfitting import check_overfitting
    from thawkit.guards.tokenizer import check_tokenizer
    from thawkit.models.backbone import _from_pretrained, load_tokenizer
    from thawkit.registry import get_strategy_class
    from thawkit.rundir import check_destination, default_run_dir, partial_dir_for

    if "metric" not in cfg.model_fields_set or cfg.metric == "macro_f1":
        cfg = cfg.model_copy(update={"metric": "f1"})
    final_dir = Path(cfg.out) if cfg.out is not None else default_run_dir(f"ner-{cfg.strategy}")
    check_destination(final_dir, cfg.overwrite)
    partial_dir = partial_dir_for(final_dir)
    set_seed(cfg.seed)
    data: NerData = load_ner_data(cfg.data, cfg.validation, cfg.test, cfg.val_fraction,
                                  cfg.split_seed if cfg.split_seed is not None else cfg.seed)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"NER needs a fast tokenizer (word alignment); {cfg.tokenizer or cfg.model} has none; fix: use a model with tokenizer.json")
    strategy = get_strategy_class(cfg.strategy)(cfg.strategy_config())
    if getattr(strategy, "uses_pooled_head", False):
        raise ConfigError("pooled heads (pooling/head options) are for classification; fix: drop them for --task ner")
    model = _from_pretrained(AutoModelForTokenClassification, cfg.model, num_labels=len(data.labels), id2label=data.id2label,
                             label2id={label: i for i, label in data.id2label.items()})
    api._check_max_length(cfg, model)
    guards = GuardReport(strict=cfg.strict)
    guards.add(check_learning_rate(cfg.strategy, cfg.resolved_lr()))
    guards.add(check_tokenizer(tokenizer, model, [" ".join(words) for words, _ in data.train[:500]]))
    model = strategy.prepare(model)
    layout, controller, ever_trainable = prepare_controller(strategy, model, cfg)

    args = api._training_arguments(cfg, partial_dir / "checkpoints", controller.num_stages > 1)
    is_main = args.process_index == 0
    train_ds = SwitchableDataset(tokenize_sentences(data.train, tokenizer, cfg.max_length, data.labels))
    val_tokens = tokenize_sentences(data.validation, tokenizer, cfg.max_length, data.labels)
    val_ds = SwitchableDataset(val_tokens, order=sorted_order(val_tokens))
    runtime, cache_reason = api._attach_cache(cfg, controller, tokenizer, train_ds, val_ds, args.world_size)
    if is_main and partial_dir.exists():
        shutil.rmtree(partial_dir)

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return ner_scalar_metrics(np.asarray(logits), np.asarray(eval_pred.label_ids), data.labels)

    collator = SwitchableCollator(tokenizer, DataCollatorForTokenClassification(tokenizer))
    loop = build_loop(cfg, controller, args, train_ds, val_ds, collator, tokenizer, compute_metrics, cfg.metric, ever_trainable)
    trainer, history = loop.trainer, loop.history
    training_loss, train_seconds = run_loop(loop, partial_dir, is_main, runtime)
    guards.add(check_overfitting(history.records))

    model = trainer.model.eval()
    metrics: dict[str, Any] = {}
    splits = {"validation": val_ds}
    if data.test is not None:
        splits["test"] = SwitchableDataset(tokenize_sentences(data.test, tokenizer, cfg.max_length, data.labels))
    for split, dataset in splits.items():
        output = trainer.predict(dataset, metric_key_prefix=split)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        metrics[split] = ner_detailed_metrics(np.asarray(logits), np.asarray(output.label_ids), data.labels)
        metrics[split]["loss"] = float(output.metrics.get(f"{split}_loss", float("nan")))
    if cfg.measure_forgetting and is_main:
        metrics["forgetting"] = api._measure_forgetting(cfg, model, tokenizer)
        history.records.append({"type": "forgetting", "step": int(trainer.state.global_step), **metrics["forgetting"]})
    from thawkit import __version__

    info = {
        "thawkit_version": __version__, "task": "token-classification", "strategy": cfg.strategy,
        "strategy_options": cfg.strategy_config().model_dump(), "base_model": cfg.model,
        "model_type": model.config.model_type, "entity_types": data.entity_types,
        "validation_source": data.validation_source, "num_train_examples": len(data.train),
        "num_validation_examples": len(data.validation), "learning_rate": cfg.resolved_lr(),
        "config": cfg.model_dump(mode="json"),
        **api._run_facts(trainer, controller, layout, loop.best, loop.time_limit, train_seconds, training_loss, args.world_size),
        "cache": runtime.summary() if runtime is not None else {"used": False, "reason": cache_reason},
        "guards": guards.as_list(),
    }
    if is_main:
        if getattr(strategy.config, "merge", False):
            model = model.merge_and_unload()
        saved = model
        write_run_files(cfg, partial_dir, final_dir, tokenizer, {"labels": data.labels, "multi_label": False}, info,
                        metrics, history.records, lambda folder: saved.save_pretrained(str(folder)))
    trainer.accelerator.wait_for_everyone()
    set_requires_grad(model, [])
    return NerRun(model, tokenizer, data.labels, info, final_dir)
