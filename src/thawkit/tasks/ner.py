"""Token classification (NER): IOB2 tags on the first sub-token of every word, seqeval metrics,
entity spans with character offsets at prediction time. Every strategy and the frozen-layer cache
apply (the cache keeps token-level states)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

import numpy as np
import torch
from torch import nn

from thawkit.data.ner import chunk_and_align, first_token_words, labelled_words, load_ner_data, read_ner_file, word_chunks
from thawkit.errors import ConfigError
from thawkit.models.backbone import load_peft_run, load_task_model
from thawkit.tasks.base import RunBase, Task, TaskData, register_task
from thawkit.tasks.roles import Route, Rule, ServedCall, ServeRequest
from thawkit.tasks.roles.advice import MEMORY_RULE, budget_short
from thawkit.tasks.roles.model import check_head_size, check_label_names

if TYPE_CHECKING:
    from thawkit.config import TrainConfig

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
    from seqeval.metrics.sequence_labeling import get_entities

    result: dict[str, Any] = ner_scalar_metrics(logits, label_ids, labels)
    gold, pred = _tag_sequences(logits.argmax(-1), label_ids, labels)
    # Counts the majority-class guard reads: a tagger that finds no entity at all learned only the "O" prior.
    result["gold_entities"] = int(len(get_entities(gold)))
    result["predicted_entities"] = int(len(get_entities(pred)))
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


class NerRequest(ServeRequest):
    inputs: Union[str, list[str]]


async def _ner(body: NerRequest, call: ServedCall) -> Any:
    single = isinstance(body.inputs, str)
    results, _ = await call.batch("predict", [body.inputs] if single else list(body.inputs))
    entities = [r["entities"] for r in results]
    return entities[0] if single else entities


@register_task("ner")
class NerTask(Task):
    run_type = "token-classification"
    default_metric = "f1"
    metrics = ("f1", "precision", "recall", "accuracy", "loss")
    peft_task_type = "TOKEN_CLS"
    needs_fast_tokenizer = True  # word alignment
    supports_distillation = True
    pipeline_tag = "token-classification"
    stock_python = ('from transformers import pipeline\n'
                    '# thawkit labels the first sub-token of each word: "first" groups words as it does\n'
                    'tagger = pipeline("token-classification", model="{run}", aggregation_strategy="first")\n'
                    'print(tagger("Peter Blackburn flew to Brussels"))')
    usage_arguments = ("Peter Blackburn flew to Brussels",)
    example_noun = "training sentences"
    decoder_warning = ("a decoder reads each token with only the words to its left: on CoNLL-2003 (1,000 sentences) "
                       "smollm2-135m reached entity F1 0.395-0.469 with seven strategies, MiniLM-L6 0.726-0.790 "
                       "(docs/benchmarks.md); prefer an encoder for tags, or measure both with thawkit compare --models")

    def routes(self) -> tuple[Route, ...]:
        return (Route("/ner", NerRequest, _ner, "entity spans with character offsets"),)

    def advisor_rules(self) -> list[Rule]:
        # Measured on CoNLL-2003, 1,000 sentences, MiniLM-L6 (docs/defaults.md, docs/benchmarks.md).
        return [
            MEMORY_RULE,
            Rule("budget-short", budget_short, "partial",
                 "full fine-tuning would exceed the time budget; partial freezing trains from cached lower layers "
                 "(CoNLL-2003, 1,000 sentences: F1 0.743 in 21 s against llrd's 0.790 in 39 s)"),
            Rule("ner", lambda s: True, "llrd",
                 "NER measured on CoNLL-2003 (1,000 sentences): llrd F1 0.790, full 0.762, partial 0.743, gradual 0.729, "
                 "LoRA 0.726, frozen 0.526: tags need the encoder's token states to adapt, and lower layers at a lower rate did best",
                 suggestions=("full fine-tuning is the alternative; compare both with thawkit compare --task ner",)),
        ]

    def distillation_soft_loss(self, student_logits: Any, teacher_logits: Any, labels: Any, temperature: float) -> Any:
        """Per-token KL at temperature T over the positions that carry a word's tag (first sub-tokens)."""
        keep = labels != -100
        return super().distillation_soft_loss(student_logits[keep], teacher_logits[keep], None, temperature)

    def teacher_targets(self, teacher: RunBase, data: TaskData, tokenizer: Any, cfg: "TrainConfig") -> list[Any]:
        """Per training feature, the teacher's logits for the words its tagged positions stand for
        (words tokenized by the teacher's tokenizer, aligned by word, not by sub-token)."""
        sentences = [words for words, _ in data.train]
        per_word = teacher.word_logits(sentences)  # type: ignore[attr-defined]
        return [torch.from_numpy(logits[indices]) for words, logits in zip(sentences, per_word)
                for indices in labelled_words(words, tokenizer, cfg.max_length)]

    def distillation_targets(self, rows: list[Any], labels: Any) -> Any:
        """The words' teacher logits placed at the student's tagged positions (zeros elsewhere, which the loss skips)."""
        tagged = labels != -100
        stacked = torch.cat(rows)
        if int(tagged.sum()) != len(stacked):
            raise RuntimeError(f"distillation: {len(stacked)} teacher word targets for {int(tagged.sum())} tagged positions")
        targets = torch.zeros(*labels.shape, stacked.shape[-1], dtype=stacked.dtype, device=stacked.device)
        targets[tagged] = stacked
        return targets

    def teacher_labelled(self, teacher: RunBase, path: Path, cfg: "TrainConfig") -> Any:
        """Unlabeled sentences (one per line, split on whitespace) tagged word by word by the teacher."""
        from thawkit.data.texts import read_texts

        sentences = [text.split() for text in read_texts(path, cfg.text_col, flag="--unlabeled")]
        return [(words, teacher.word_predictions(words)[0]) for words in sentences if words]  # type: ignore[attr-defined]

    def speed_probe(self, run: RunBase, data: TaskData) -> Callable[[int], None]:
        """Batched forward passes over training sentences (as serving batches them), not the
        one-sentence-at-a-time word alignment of ``predict``, whose Python overhead would hide the
        model's own speed."""
        sentences = [words for words, _ in data.train[:256]]

        @torch.inference_mode()
        def infer(count: int) -> None:
            run.model.eval()
            for start in range(0, count, 32):
                batch = run.tokenizer(sentences[start : min(start + 32, count)], is_split_into_words=True, truncation=True,
                                      max_length=run.max_length, padding=True, return_tensors="pt")
                run.model(**batch)

        return infer

    def add_training_examples(self, data: TaskData, examples: Any) -> None:
        unknown = sorted({tag for _, tags in examples for tag in tags} - set(data.labels))
        if unknown:
            raise ConfigError(f"the teacher tags {', '.join(unknown)}, which the training data never uses; fix: distill on data "
                              "labelled like the teacher's")
        data.train = list(data.train) + list(examples)

    def load_data(self, cfg: "TrainConfig") -> TaskData:
        data = load_ner_data(cfg.data, cfg.validation, cfg.test, cfg.val_fraction,
                             cfg.data_split_seed())
        return TaskData(data.train, data.validation, data.test, data.labels, False, data.validation_source,
                        {"entity_types": data.entity_types})

    def build_model(self, cfg: "TrainConfig", data: TaskData, strategy: Any) -> nn.Module:
        from transformers import AutoModelForTokenClassification

        return load_task_model(AutoModelForTokenClassification, cfg.model, num_labels=len(data.labels),
                                       id2label=data.id2label, label2id=data.label2id)

    def encode(self, data: TaskData, split: str, tokenizer: Any, cfg: "TrainConfig") -> Any:
        return tokenize_sentences(data.split(split), tokenizer, cfg.max_length, data.labels)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def sample_texts(self, data: TaskData, limit: int = 500) -> list[str]:
        return [" ".join(words) for words, _ in data.train[:limit]]

    def metric_function(self, data: TaskData, split: str) -> Callable[[Any], dict[str, float]]:
        return lambda prediction: ner_scalar_metrics(_logits(prediction), np.asarray(prediction.label_ids), data.labels)

    def final_metrics(self, data: TaskData, split: str, output: Any) -> dict[str, Any]:
        metrics = ner_detailed_metrics(_logits(output), np.asarray(output.label_ids), data.labels)
        metrics["loss"] = float(output.metrics.get(f"{split}_loss", float("nan")))
        return metrics

    def make_run(self, model: nn.Module, tokenizer: Any, data: TaskData, info: dict[str, Any], path: Path | None) -> RunBase:
        return NerRun(model, tokenizer, info, path, data.labels)

    onnx_outputs = {"logits": ("batch", "sequence")}

    def check_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> None:
        check_head_size(path, check_label_names(path, labels, minimum=2))

    def load_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> RunBase:
        from transformers import AutoTokenizer

        from thawkit.models.onnx import exported_model

        names = labels["labels"]
        model = exported_model(path) or self._pytorch_model(path, info, names)
        return NerRun(model.eval(), AutoTokenizer.from_pretrained(str(path)), info, path, names)

    @staticmethod
    def _pytorch_model(path: Path, info: dict[str, Any], names: list[str]) -> nn.Module:
        from transformers import AutoModelForTokenClassification

        if (path / "adapter_config.json").exists():
            base = load_task_model(AutoModelForTokenClassification, info["config"]["model"], num_labels=len(names),
                                           id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
            return load_peft_run(base, path)
        return AutoModelForTokenClassification.from_pretrained(str(path), use_safetensors=True)


def _logits(prediction: Any) -> np.ndarray:
    logits = prediction.predictions
    return np.asarray(logits[0] if isinstance(logits, tuple) else logits)


class NerRun(RunBase):
    """A trained token classifier: ``predict(text)`` returns entity spans with character offsets."""

    @torch.inference_mode()
    def word_predictions(self, words: list[str]) -> tuple[list[str], list[float]]:
        """A tag and its probability per word (the first sub-token's prediction), chunked like training."""
        label_to_id = {label: i for i, label in enumerate(self.labels)}
        features = chunk_and_align((words, ["O"] * len(words)), self.tokenizer, self.max_length, label_to_id)
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

    @torch.inference_mode()
    def word_logits(self, sentences: list[list[str]], batch_size: int = 32) -> list[np.ndarray]:
        """Per sentence, the logits of each word's first sub-token, (words, labels); zeros for a word
        the tokenizer gives no token. Chunked like training, batched (right-padded)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        out = [np.zeros((len(words), len(self.labels)), dtype=np.float32) for words in sentences]
        pieces = [(s, begin, encoded) for s, words in enumerate(sentences) if words
                  for begin, encoded in word_chunks(words, self.tokenizer, self.max_length)]
        for start in range(0, len(pieces), batch_size):
            batch = pieces[start : start + batch_size]
            inputs = self.tokenizer.pad([{k: v for k, v in encoded.items()} for _, _, encoded in batch], padding_side="right",
                                        return_tensors="pt").to(device)
            logits = self.model(**inputs).logits.float().cpu().numpy()
            for row, (s, begin, encoded) in enumerate(batch):
                for position, word in enumerate(first_token_words(encoded)):
                    if word is not None:
                        out[s][begin + word] = logits[row, position]
        return out

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
        from seqeval.metrics import f1_score, precision_score, recall_score

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
        return {"f1": float(f1_score(gold, pred, zero_division=0)), "precision": float(precision_score(gold, pred, zero_division=0)),
                "recall": float(recall_score(gold, pred, zero_division=0)), "num_sentences": len(sentences)}

    def headline(self) -> str:
        validation = self.metrics.get("validation", {})
        lines = [f"ner {self.info.get('strategy')}: validation entity F1 {validation.get('f1', float('nan')):.4f} "
                 f"(P {validation.get('precision', float('nan')):.3f}, R {validation.get('recall', float('nan')):.3f})"]
        lines += [f"  {name:8s} F1 {v['f1']:.3f}  support {v['support']}" for name, v in validation.get("per_type", {}).items()]
        return "\n".join(lines)
