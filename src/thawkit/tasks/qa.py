"""Extractive question answering: windows over long contexts (doc stride, offset mapping), an
n-best search for the best valid span over all windows of an example, SQuAD v1.1 exact match / F1
with the official normalisation; v2-style unanswerable questions handled when present.

Hand-written on purpose, and kept to the official script's lines: transformers 5 removed both
``transformers.data.processors.squad`` (windowing, n-best) and ``transformers.data.metrics.squad_metrics``
(checked: neither module exists in the installed release), and ``evaluate.load("squad")`` fetches the
metric's script from the Hub when it runs, which an offline machine cannot (thawkit runs offline).
tests/test_qa.py checks the normalisation, exact match and F1 on hand-computed cases."""

from __future__ import annotations

import collections
import math
import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from thawkit.data.squad import QAExample, read_squad, write_squad  # noqa: F401  (re-exported: the task's data format)
from thawkit.errors import ConfigError
from thawkit.models.backbone import load_peft_run, load_task_model
from thawkit.tasks.base import RunBase, Task, TaskData, register_task
from thawkit.tasks.roles import Route, Rule, ServedCall, ServeRequest
from thawkit.tasks.roles.advice import MEMORY_RULE
from thawkit.tasks.roles.serving import RequestError

if TYPE_CHECKING:
    from thawkit.config import TrainConfig

DOC_STRIDE = 64
N_BEST = 20
MAX_ANSWER_TOKENS = 30


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


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits.astype(np.float64) - float(np.max(logits)))
    return shifted / shifted.sum()


def postprocess(examples: list[QAExample], meta: list[dict[str, Any]], start_logits: np.ndarray, end_logits: np.ndarray,
                n_best: int = N_BEST, max_answer_tokens: int = MAX_ANSWER_TOKENS, allow_null: bool = False) -> dict[str, dict[str, Any]]:
    """The best valid span of each example over all its windows: start <= end, inside the context,
    at most ``max_answer_tokens`` long; with ``allow_null`` the empty answer competes via [CLS]
    (its score: the lowest [CLS] score over the example's windows). ``score``: the span's probability
    in its window, P(start) x P(end) under the softmax over the window's context tokens (0-1)."""
    windows: dict[str, list[int]] = collections.defaultdict(list)
    for index, item in enumerate(meta):
        windows[item["example_id"]].append(index)
    results = {}
    for example in examples:
        best: dict[str, Any] = {"text": "", "start": None, "end": None, "score": 0.0}
        best_logit, null_logit, null_probability = float("-inf"), float("inf"), 0.0
        for index in windows[example.id]:
            starts, ends, offsets = start_logits[index], end_logits[index], meta[index]["offsets"]
            length = len(offsets)
            # as stock QA pipelines do: the softmax over the context tokens (and [CLS]), the question masked
            usable = np.array([i == 0 or offsets[i] is not None for i in range(length)])
            p_start, p_end = _softmax(np.where(usable, starts[:length], -np.inf)), _softmax(np.where(usable, ends[:length], -np.inf))
            # The null answer's score is the lowest over the windows (as in SQuAD v2 practice): a
            # window that does not contain the answer rightly votes "no answer here".
            if float(starts[0] + ends[0]) < null_logit:
                null_logit, null_probability = float(starts[0] + ends[0]), float(p_start[0] * p_end[0])
            for s in np.argsort(starts[:length])[::-1][:n_best]:
                for e in np.argsort(ends[:length])[::-1][:n_best]:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_tokens:
                        continue
                    if float(starts[s] + ends[e]) > best_logit:  # ranked by logits, reported as a probability
                        best_logit = float(starts[s] + ends[e])
                        begin, finish = offsets[s][0], offsets[e][1]
                        best = {"text": example.context[begin:finish], "start": begin, "end": finish,
                                "score": float(p_start[s] * p_end[e])}
        if allow_null and null_logit > best_logit:
            best = {"text": "", "start": None, "end": None, "score": null_probability}
        results[example.id] = best
    return results


def first_sentence_baseline(examples: list[QAExample]) -> dict[str, str]:
    return {e.id: re.split(r"(?<=[.!?])\s", e.context, maxsplit=1)[0] for e in examples}


# --- task ---------------------------------------------------------------------------------------
def split_by_context(examples: list[QAExample], fraction: float, seed: int) -> tuple[list[QAExample], list[QAExample]]:
    """Hold out whole paragraphs, so no context is in both splits."""
    contexts = sorted({e.context for e in examples})
    rng = np.random.default_rng(seed)
    held = set(rng.choice(len(contexts), size=max(1, int(len(contexts) * fraction)), replace=False).tolist())
    held_contexts = {contexts[i] for i in held}
    return [e for e in examples if e.context not in held_contexts], [e for e in examples if e.context in held_contexts]


class QAPair(BaseModel):
    question: str
    context: str


class QARequest(ServeRequest):
    question: str | None = None
    context: str | None = None
    inputs: list[QAPair] | None = None


async def _qa(body: QARequest, call: ServedCall) -> Any:
    single = body.inputs is None
    if single:
        if body.question is None or body.context is None:
            raise RequestError(422, "pass question and context, or inputs: [{question, context}, ...]")
        pairs = [QAPair(question=body.question, context=body.context)]
    else:
        pairs = list(body.inputs or [])
    results, _ = await call.batch("predict", [p.question for p in pairs], [p.context for p in pairs])
    answers = [{"answer": r["answer"], "start": r["start"], "end": r["end"],
                "score": float(r["score"]) if isinstance(r["score"], (int, float)) and math.isfinite(r["score"]) else None}
               for r in results]
    return answers[0] if single else answers


@register_task("qa")
class QATask(Task):
    run_type = "question-answering"
    default_metric = "f1"
    metrics = ("f1", "exact_match", "loss")
    default_max_length = 384
    pipeline_tag = "question-answering"
    stock_note = ("transformers 5 has no question-answering pipeline: `AutoModelForQuestionAnswering.from_pretrained(RUN)` "
                  "loads the weights, and the span search (windows, offsets, best start/end) is `thawkit predict`'s")
    usage_arguments = ("Who won?", "--pair", "The Denver Broncos won the game.")
    length_from_data = False  # long contexts are split into overlapping windows, not truncated
    example_noun = "training questions"

    def routes(self) -> tuple[Route, ...]:
        return (Route("/qa", QARequest, _qa, "answer span, offsets and score"),)

    def advisor_rules(self) -> list[Rule]:
        return [
            MEMORY_RULE,
            Rule("qa", lambda s: True, "llrd",
                 "QA measured on SQuAD (1,582 questions, whole articles, 3 epochs): llrd F1 65.0, gradual 64.0, full 62.4 "
                 "(mean of 2 seeds), LoRA 51.6, partial 49.2, frozen 14.1 (one seed): span extraction needs every layer to "
                 "adapt, lower layers at a lower rate did best",
                 suggestions=("gradual unfreezing and full fine-tuning are the alternatives; compare them with thawkit compare --task qa",)),
        ]
    # Not "QUESTION_ANS": peft's PeftModelForQuestionAnswering drops token_type_ids in its forward
    # (peft 0.21), so BERT-style models would train without segment ids and the merged model, which
    # uses them, would predict differently (caught by the merge parity check). The generic PeftModel
    # passes every input through.
    peft_task_type = None
    needs_fast_tokenizer = True  # offset mapping
    eval_in_length_order = False  # predictions must line up with the windows' offsets in data.scratch

    def load_data(self, cfg: "TrainConfig") -> TaskData:
        train = read_squad(cfg.data)
        if cfg.validation is not None:
            validation, source = read_squad(cfg.validation), str(cfg.validation)
        else:
            seed = cfg.data_split_seed()
            train, validation = split_by_context(train, cfg.val_fraction, seed)
            source = f"{cfg.val_fraction:.0%} of the contexts of {cfg.data} (seed {seed})"
        test = read_squad(cfg.test) if cfg.test is not None else None
        return TaskData(train, validation, test, validation_source=source,
                        facts={"has_unanswerable": any(not e.answers for e in train)})

    def check_config(self, cfg: "TrainConfig", strategy: Any) -> None:
        super().check_config(cfg, strategy)
        if cfg.max_length is not None and cfg.max_length < 32:
            raise ConfigError(f"--max-length {cfg.max_length} leaves no room for a question and its context; fix: pass --max-length 64 or more (384 is usual)")

    def build_model(self, cfg: "TrainConfig", data: TaskData, strategy: Any) -> nn.Module:
        from transformers import AutoModelForQuestionAnswering

        return load_task_model(AutoModelForQuestionAnswering, cfg.model)

    def encode(self, data: TaskData, split: str, tokenizer: Any, cfg: "TrainConfig") -> Any:
        from datasets import Dataset

        examples = data.split(split)
        if split != "train":  # the windows' offsets, to turn logits into answer texts when scoring
            data.scratch[split] = eval_features(tokenizer, examples, cfg.max_length)[1]
        # Every split keeps its answer positions: the Trainer computes a loss (and metrics) only with labels.
        return Dataset.from_list(train_features(tokenizer, examples, cfg.max_length))

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def sample_texts(self, data: TaskData, limit: int = 500) -> list[str]:
        return [f"{e.question} {e.context}" for e in data.train[:limit]]

    def answers(self, data: TaskData, split: str, prediction: Any) -> dict[str, dict[str, Any]]:
        start_logits, end_logits = prediction.predictions[:2]
        return postprocess(data.split(split), data.scratch[split], np.asarray(start_logits), np.asarray(end_logits),
                           allow_null=bool(data.facts["has_unanswerable"]))

    def metric_function(self, data: TaskData, split: str) -> Callable[[Any], dict[str, float]]:
        def compute(prediction: Any) -> dict[str, float]:
            answers = self.answers(data, split, prediction)
            return squad_metrics(data.split(split), {k: v["text"] for k, v in answers.items()})

        return compute

    def final_metrics(self, data: TaskData, split: str, output: Any) -> dict[str, Any]:
        metrics: dict[str, Any] = {**self.metric_function(data, split)(output), "loss": float(output.metrics.get(f"{split}_loss", float("nan")))}
        metrics["first_sentence_baseline"] = squad_metrics(data.split(split), first_sentence_baseline(data.split(split)))
        return metrics

    def run_facts(self, data: TaskData) -> dict[str, Any]:
        return {**data.facts, "num_questions": {"train": len(data.train), "validation": len(data.validation)}}

    def make_run(self, model: nn.Module, tokenizer: Any, data: TaskData, info: dict[str, Any], path: Path | None) -> RunBase:
        return QARun(model, tokenizer, info, path)

    onnx_outputs = {"start_logits": ("batch", "sequence"), "end_logits": ("batch", "sequence")}

    def load_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> RunBase:
        from transformers import AutoTokenizer

        from thawkit.models.onnx import exported_model

        model = exported_model(path) or self._pytorch_model(path, info)
        return QARun(model.eval(), AutoTokenizer.from_pretrained(str(path)), info, path)

    @staticmethod
    def _pytorch_model(path: Path, info: dict[str, Any]) -> nn.Module:
        from transformers import AutoModelForQuestionAnswering

        if (path / "adapter_config.json").exists():
            return load_peft_run(load_task_model(AutoModelForQuestionAnswering, info["config"]["model"]), path)
        return AutoModelForQuestionAnswering.from_pretrained(str(path), use_safetensors=True)


# --- run ----------------------------------------------------------------------------------------
class QARun(RunBase):
    """``predict(question, context)`` -> answer text, character offsets and a score."""

    @torch.inference_mode()
    def answer(self, examples: list[QAExample]) -> dict[str, dict[str, Any]]:
        inputs, meta = eval_features(self.tokenizer, examples, self.max_length)
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

    def headline(self) -> str:
        validation = self.metrics.get("validation", {})
        baseline = validation.get("first_sentence_baseline", {})
        return (f"qa {self.info.get('strategy')}: validation EM {validation.get('exact_match', float('nan')):.1f}, "
                f"F1 {validation.get('f1', float('nan')):.1f} (first-sentence baseline F1 {baseline.get('f1', float('nan')):.1f}) "
                f"on {validation.get('num_questions')} questions")
