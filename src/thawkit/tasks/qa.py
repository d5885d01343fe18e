"""Extractive question answering: windows over long contexts (doc stride, offset mapping), an
n-best search for the best valid span over all windows of an example, SQuAD v1.1 exact match / F1
with the official normalisation; v2-style unanswerable questions handled when present."""

from __future__ import annotations

import collections
import json
import re
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawkit.config import TrainConfig
from thawkit.errors import ConfigError, DataError
from thawkit.rundir import METRICS_FILE

DOC_STRIDE = 64
N_BEST = 20
MAX_ANSWER_TOKENS = 30


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[dict[str, Any]]  # [{"text", "answer_start"}]; empty: unanswerable
    title: str = ""


def read_squad(path: str | Path, titles: set[str] | None = None) -> list[QAExample]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; fix: check the path")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not SQuAD-format JSON ({exc}); fix: a {{'data': [{{'paragraphs': ...}}]}} file") from None
    if not isinstance(payload, dict) or "data" not in payload:
        raise DataError(f"{path}: no top-level 'data' list; fix: use the SQuAD v1.1/v2.0 format")
    examples = []
    for article in payload["data"]:
        title = article.get("title", "")
        if titles is not None and title not in titles:
            continue
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                answers = [] if qa.get("is_impossible") else list(qa.get("answers", []))
                for answer in answers:
                    start = answer["answer_start"]
                    if context[start : start + len(answer["text"])] != answer["text"]:
                        raise DataError(f"{path}: answer {answer['text']!r} of question {qa['id']} is not at offset {start} of its context; fix: correct answer_start")
                examples.append(QAExample(qa["id"], qa["question"], context, answers, title))
    if not examples:
        raise DataError(f"{path}: no questions found; fix: check the file")
    return examples


# --- SQuAD metrics (the official v1.1 normalisation) -------------------------------------------
def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, truth: str) -> float:
    pred_tokens, true_tokens = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred_tokens or not true_tokens:
        return float(pred_tokens == true_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(true_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(examples: list[QAExample], predictions: dict[str, str]) -> dict[str, float]:
    exact = f1 = 0.0
    for example in examples:
        prediction = predictions.get(example.id, "")
        truths = [a["text"] for a in example.answers] or [""]
        exact += max(float(normalize_answer(prediction) == normalize_answer(t)) for t in truths)
        f1 += max(_f1(prediction, t) for t in truths)
    return {"exact_match": 100.0 * exact / len(examples), "f1": 100.0 * f1 / len(examples), "num_questions": len(examples)}


# --- windows ----------------------------------------------------------------------------------
def _encode(tokenizer: Any, examples: list[QAExample], max_length: int, stride: int | None) -> Any:
    # The overlap between windows: the usual 64 tokens, less for short windows.
    stride = stride if stride is not None else min(DOC_STRIDE, max(8, max_length // 3))
    pad_right = tokenizer.padding_side == "right"
    return tokenizer(
        [e.question.lstrip() for e in examples] if pad_right else [e.context for e in examples],
        [e.context for e in examples] if pad_right else [e.question.lstrip() for e in examples],
        truncation="only_second" if pad_right else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def train_features(tokenizer: Any, examples: list[QAExample], max_length: int, stride: int | None = None) -> list[dict[str, Any]]:
    """Windows with the answer's token span; a window without the whole answer points at [CLS]."""
    encoded = _encode(tokenizer, examples, max_length, stride)
    features = []
    for index, offsets in enumerate(encoded["offset_mapping"]):
        example = examples[encoded["overflow_to_sample_mapping"][index]]
        input_ids = encoded["input_ids"][index]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        sequence_ids = encoded.sequence_ids(index)
        start_position = end_position = cls_index
        if example.answers:
            start_char = example.answers[0]["answer_start"]
            end_char = start_char + len(example.answers[0]["text"])
            context_tokens = [i for i, s in enumerate(sequence_ids) if s == 1]
            first, last = context_tokens[0], context_tokens[-1]
            if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
                start_position = next(i for i in range(first, last + 1) if offsets[i][1] > start_char)
                end_position = next(i for i in range(last, first - 1, -1) if offsets[i][0] < end_char)
        row = {k: encoded[k][index] for k in encoded if k not in ("offset_mapping", "overflow_to_sample_mapping")}
        row.update(start_positions=start_position, end_positions=end_position)
        features.append(row)
    return features


def eval_features(tokenizer: Any, examples: list[QAExample], max_length: int, stride: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Model inputs per window, and per window its example id and context offsets (None elsewhere)."""
    encoded = _encode(tokenizer, examples, max_length, stride)
    inputs, meta = [], []
    for index, offsets in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(index)
        inputs.append({k: encoded[k][index] for k in encoded if k not in ("offset_mapping", "overflow_to_sample_mapping")})
        meta.append({
            "example_id": examples[encoded["overflow_to_sample_mapping"][index]].id,
            "offsets": [tuple(o) if sequence_ids[i] == 1 else None for i, o in enumerate(offsets)],
        })
    return inputs, meta


def postprocess(examples: list[QAExample], meta: list[dict[str, Any]], start_logits: np.ndarray, end_logits: np.ndarray,
                n_best: int = N_BEST, max_answer_tokens: int = MAX_ANSWER_TOKENS, allow_null: bool = False) -> dict[str, dict[str, Any]]:
    """The best valid span of each example over all its windows: start <= end, inside the context,
    at most ``max_answer_tokens`` long; with ``allow_null`` the empty answer competes via [CLS]
    (its score: the lowest [CLS] score over the example's windows)."""
    windows: dict[str, list[int]] = collections.defaultdict(list)
    for index, item in enumerate(meta):
        windows[item["example_id"]].append(index)
    results = {}
    for example in examples:
        best: dict[str, Any] = {"text": "", "start": None, "end": None, "score": float("-inf")}
        null_score = float("inf")
        for index in windows[example.id]:
            starts, ends, offsets = start_logits[index], end_logits[index], meta[index]["offsets"]
            # The null answer's score is the lowest over the windows (as in SQuAD v2 practice): a
            # window that does not contain the answer rightly votes "no answer here".
            null_score = min(null_score, float(starts[0] + ends[0]))
            length = len(offsets)
            for s in np.argsort(starts[:length])[::-1][:n_best]:
                for e in np.argsort(ends[:length])[::-1][:n_best]:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_tokens:
                        continue
                    score = float(starts[s] + ends[e])
                    if score > best["score"]:
                        begin, finish = offsets[s][0], offsets[e][1]
                        best = {"text": example.context[begin:finish], "start": begin, "end": finish, "score": score}
        if allow_null and null_score > best["score"]:
            best = {"text": "", "start": None, "end": None, "score": null_score}
        results[example.id] = best
    return results


def first_sentence_baseline(examples: list[QAExample]) -> dict[str, str]:
    return {e.id: re.split(r"(?<=[.!?])\s", e.context, maxsplit=1)[0] for e in examples}


# --- run ----------------------------------------------------------------------------------------
class QARun:
    """``predict(question, context)`` -> answer text, character offsets and a score."""

    def __init__(self, model: Any, tokenizer: Any, info: dict[str, Any], path: Path | None = None) -> None:
        self.model, self.tokenizer, self.info, self.path = model, tokenizer, info, path
        self.labels: list[str] = []
        self.multi_label = False

    @classmethod
    def load(cls, path: Path, info: dict[str, Any]) -> "QARun":
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        if (path / "adapter_config.json").exists():
            from peft import PeftModel

            from thawkit.models.backbone import _from_pretrained

            model = PeftModel.from_pretrained(_from_pretrained(AutoModelForQuestionAnswering, info["config"]["model"]), str(path))
        else:
            model = AutoModelForQuestionAnswering.from_pretrained(str(path))
        return cls(model.eval(), AutoTokenizer.from_pretrained(str(path)), info, path)

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads((self.path / METRICS_FILE).read_text()) if self.path else {}

    @torch.inference_mode()
    def answer(self, examples: list[QAExample]) -> dict[str, dict[str, Any]]:
        max_length = int(self.info.get("config", {}).get("max_length", 384))
        inputs, meta = eval_features(self.tokenizer, examples, max_length)
        self.model.eval()
        device = next(self.model.parameters()).device
        starts, ends = [], []
        for row in inputs:
            output = self.model(**{k: torch.tensor([v], device=device) for k, v in row.items()})
            starts.append(output.start_logits[0].float().cpu().numpy())
            ends.append(output.end_logits[0].float().cpu().numpy())
        width = max(len(s) for s in starts)
        pad = lambda rows: np.stack([np.pad(r, (0, width - len(r)), constant_values=-1e4) for r in rows])  # noqa: E731
        return postprocess(examples, meta, pad(starts), pad(ends), allow_null=bool(self.info.get("has_unanswerable")))

    def predict(self, texts: list[str] | str, text_pairs: list[str] | str | None = None, batch_size: int = 32) -> list[dict[str, Any]]:
        """``texts``: questions; ``text_pairs``: their contexts."""
        if text_pairs is None:
            raise ConfigError("question answering needs a context; fix: pass --pair CONTEXT (or text_pairs=[...])")
        questions = [texts] if isinstance(texts, str) else texts
        contexts = [text_pairs] * len(questions) if isinstance(text_pairs, str) else text_pairs
        examples = [QAExample(str(i), q, c, []) for i, (q, c) in enumerate(zip(questions, contexts))]
        answers = self.answer(examples)
        return [{"question": e.question, "answer": answers[e.id]["text"], "start": answers[e.id]["start"],
                 "end": answers[e.id]["end"], "score": answers[e.id]["score"]} for e in examples]

    def evaluate(self, data: str | Path, **_: Any) -> dict[str, Any]:
        examples = read_squad(data)
        return squad_metrics(examples, {k: v["text"] for k, v in self.answer(examples).items()})


def train_qa(cfg: TrainConfig, train_examples: list[QAExample] | None = None, eval_examples: list[QAExample] | None = None) -> QARun:
    from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding, set_seed

    from thawkit import __version__, api
    from thawkit.engine.cached_training import SwitchableCollator, SwitchableDataset
    from thawkit.engine.loop import build_loop, prepare_controller, run_loop, write_run_files
    from thawkit.engine.trainability import set_requires_grad
    from thawkit.guards import GuardReport
    from thawkit.guards.learning_rate import check_learning_rate
    from thawkit.models.backbone import _from_pretrained, load_tokenizer
    from thawkit.registry import get_strategy_class
    from thawkit.rundir import check_destination, default_run_dir, partial_dir_for

    from datasets import Dataset

    final_dir = Path(cfg.out) if cfg.out is not None else default_run_dir(f"qa-{cfg.strategy}")
    check_destination(final_dir, cfg.overwrite)
    partial_dir = partial_dir_for(final_dir)
    set_seed(cfg.seed)
    train_examples = train_examples or read_squad(cfg.data)
    if eval_examples is None:
        if cfg.validation is not None:
            eval_examples = read_squad(cfg.validation)
        else:  # split by context, so no paragraph is in both
            contexts = sorted({e.context for e in train_examples})
            rng = np.random.default_rng(cfg.split_seed if cfg.split_seed is not None else cfg.seed)
            held = set(rng.choice(len(contexts), size=max(1, int(len(contexts) * cfg.val_fraction)), replace=False).tolist())
            held_contexts = {contexts[i] for i in held}
            eval_examples = [e for e in train_examples if e.context in held_contexts]
            train_examples = [e for e in train_examples if e.context not in held_contexts]
    has_unanswerable = any(not e.answers for e in train_examples)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("question answering needs a fast tokenizer (offset mapping); fix: use a model with tokenizer.json")
    strategy = get_strategy_class(cfg.strategy)(cfg.strategy_config())
    if getattr(strategy, "uses_pooled_head", False):
        raise ConfigError("pooled heads are for classification; fix: drop pooling/head options for --task qa")
    model = _from_pretrained(AutoModelForQuestionAnswering, cfg.model)
    api._check_max_length(cfg, model)
    guards = GuardReport(strict=cfg.strict)
    guards.add(check_learning_rate(cfg.strategy, cfg.resolved_lr()))
    model = strategy.prepare(model)
    layout, controller, ever_trainable = prepare_controller(strategy, model, cfg)
    args = api._training_arguments(cfg, partial_dir / "checkpoints", controller.num_stages > 1)
    is_main = args.process_index == 0
    train_ds = SwitchableDataset(Dataset.from_list(train_features(tokenizer, train_examples, cfg.max_length)))
    _, eval_meta = eval_features(tokenizer, eval_examples, cfg.max_length)
    # The same windows with their answer positions: the Trainer computes metrics only with labels.
    val_ds = SwitchableDataset(Dataset.from_list(train_features(tokenizer, eval_examples, cfg.max_length)))
    runtime, cache_reason = api._attach_cache(cfg, controller, tokenizer, train_ds, val_ds, args.world_size)
    if is_main and partial_dir.exists():
        shutil.rmtree(partial_dir)

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        start_logits, end_logits = eval_pred.predictions[:2]
        answers = postprocess(eval_examples, eval_meta, np.asarray(start_logits), np.asarray(end_logits), allow_null=has_unanswerable)
        return squad_metrics(eval_examples, {k: v["text"] for k, v in answers.items()})

    collator = SwitchableCollator(tokenizer, DataCollatorWithPadding(tokenizer))
    loop = build_loop(cfg, controller, args, train_ds, val_ds, collator, tokenizer, compute_metrics, "f1", ever_trainable)
    trainer, history = loop.trainer, loop.history
    training_loss, train_seconds = run_loop(loop, partial_dir, is_main, runtime)
    model = trainer.model.eval()
    output = trainer.predict(val_ds, metric_key_prefix="validation")
    metrics: dict[str, Any] = {"validation": {k.removeprefix("validation_"): v for k, v in output.metrics.items()
                                              if k.removeprefix("validation_") in ("exact_match", "f1", "num_questions")}}
    metrics["validation"]["first_sentence_baseline"] = squad_metrics(eval_examples, first_sentence_baseline(eval_examples))
    info = {
        "thawkit_version": __version__, "task": "question-answering", "strategy": cfg.strategy,
        "strategy_options": cfg.strategy_config().model_dump(), "base_model": cfg.model, "has_unanswerable": has_unanswerable,
        "num_train_examples": len(train_examples), "num_validation_examples": len(eval_examples),
        "num_train_windows": len(train_ds), "learning_rate": cfg.resolved_lr(), "config": cfg.model_dump(mode="json"),
        **api._run_facts(trainer, controller, layout, loop.best, loop.time_limit, train_seconds, training_loss, args.world_size),
        "cache": runtime.summary() if runtime is not None else {"used": False, "reason": cache_reason},
        "guards": guards.as_list(),
    }
    if is_main:
        if getattr(strategy.config, "merge", False):
            model = model.merge_and_unload()
        saved = model
        write_run_files(cfg, partial_dir, final_dir, tokenizer, {"labels": [], "multi_label": False}, info, metrics,
                        history.records, lambda folder: saved.save_pretrained(str(folder)))
    trainer.accelerator.wait_for_everyone()
    set_requires_grad(model, [])
    return QARun(model, tokenizer, info, final_dir)
