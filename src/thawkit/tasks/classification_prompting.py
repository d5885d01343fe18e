"""A decoder prompted as a classifier, without training: the labels' names as verbalizers, each
scored by its log-likelihood after the prompt (constrained to the label set, no free text parsed).

The prompt is the model's own chat template where it has one — the instruction as the system turn,
each demonstration a user turn (the text) answered by an assistant turn (its label), then the text
to classify and the template's generation prompt — else plain text ("TEXT\\nAnswer: LABEL" blocks
under the instruction). The instruction and the demonstrations are the same for every text: they
run through the model once and their key/value cache is reused for every batch, so k shots cost
what the texts cost, not k times more. A label is scored as the sum of its tokens' log-probabilities
(the probability of the whole name); the highest wins. Contextual calibration (Zhao et al. 2021)
divides out the label distribution the same prompt gives content-free texts ("N/A", "", "[MASK]"):
small models lean hard toward one label (measured: docs/benchmarks.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from thawkit.errors import ConfigError
from thawkit.tasks.generation_text import has_chat_template

DEFAULT_INSTRUCTION = "Classify the text. Answer with one of: {labels}."
_SLOT = "\u2063THAWKIT-TEXT\u2063"  # where the text to classify goes in the rendered template


@dataclass
class PromptFormat:
    """Token ids around each text: ``prefix`` (instruction and demonstrations, run once), the text,
    ``tail`` (the template's end of turn and generation prompt), then one label's ``verbalizers``."""

    prefix: list[int]
    tail: list[int]
    verbalizers: list[list[int]]
    labels: list[str]
    chat: bool
    rendered_prefix: str
    rendered_tail: str
    max_text_tokens: int

    def text_ids(self, tokenizer: Any, text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])[: self.max_text_tokens]

    def positions(self, text_tokens: int) -> int:
        """Positions a text of ``text_tokens`` tokens needs with the longest label."""
        return len(self.prefix) + text_tokens + len(self.tail) + max(len(v) for v in self.verbalizers)


def _clip(tokenizer: Any, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def build_prompt(tokenizer: Any, labels: list[str], demonstrations: list[tuple[str, str]], instruction: str | None,
                 max_text_tokens: int) -> PromptFormat:
    """The prompt for ``labels`` with ``demonstrations`` ((text, label) pairs, in order); texts longer
    than ``max_text_tokens`` are cut (demonstrations and texts to classify alike)."""
    instruction = (instruction or DEFAULT_INSTRUCTION).replace("{labels}", ", ".join(labels))
    demos = [(_clip(tokenizer, text, max_text_tokens), label) for text, label in demonstrations]
    chat = has_chat_template(tokenizer)
    if chat:
        turns: list[dict[str, str]] = []
        for text, label in demos:
            turns += [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
        turns.append({"role": "user", "content": _SLOT})
        try:
            rendered = tokenizer.apply_chat_template([{"role": "system", "content": instruction}, *turns],
                                                     add_generation_prompt=True, tokenize=False)
        except Exception:  # noqa: BLE001 - a template without a system role (jinja raises its own error type)
            first = {"role": "user", "content": f"{instruction}\n\n{turns[0]['content']}"}
            rendered = tokenizer.apply_chat_template([first, *turns[1:]], add_generation_prompt=True, tokenize=False)
        head, tail = rendered.split(_SLOT)
        prefix = list(tokenizer(head, add_special_tokens=False)["input_ids"])  # the template writes its own BOS
        names = labels
    else:
        head = instruction + "\n\n" + "".join(f"{text}\nAnswer: {label}\n\n" for text, label in demos)
        tail = "\nAnswer:"
        prefix = list(tokenizer(head, add_special_tokens=True)["input_ids"])
        names = [" " + label for label in labels]  # after "Answer:", a word starts with its space
    verbalizers = [list(tokenizer(name, add_special_tokens=False)["input_ids"]) for name in names]
    for label, ids in zip(labels, verbalizers):
        if not ids:
            raise ConfigError(f"label {label!r} tokenizes to nothing; fix: name the labels with words (--label-names)")
    return PromptFormat(prefix=prefix, tail=list(tokenizer(tail, add_special_tokens=False)["input_ids"]),
                        verbalizers=verbalizers, labels=labels, chat=chat, rendered_prefix=head, rendered_tail=tail,
                        max_text_tokens=max_text_tokens)


def check_fits(prompt: PromptFormat, model: Any, shots: int, tokenizer: Any, texts: list[str]) -> None:
    """One line when the prompt and the longest of ``texts`` exceed the model's positions."""
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    longest = max((len(prompt.text_ids(tokenizer, text)) for text in texts), default=0)
    if limit is not None and prompt.positions(longest) > limit:
        raise ConfigError(f"the prompt ({len(prompt.prefix)} tokens with {shots} demonstrations per class) and the longest text "
                          f"({longest} tokens) need {prompt.positions(longest)} positions; the model has {limit}; fix: "
                          "fewer --shots or a smaller --max-length")


@torch.inference_mode()
def score_labels(model: Any, tokenizer: Any, prompt: PromptFormat, texts: list[str], batch_size: int = 8) -> np.ndarray:
    """(len(texts), len(labels)) log-likelihoods of each label's verbalizer after each text's prompt.

    Labels of one token each (the usual case) are all read off one pass per text, at its last
    position; longer ones are scored as one row per (text, label)."""
    model.eval()
    body, head = model.base_model, model.get_output_embeddings()
    cache = body(input_ids=torch.tensor([prompt.prefix]), use_cache=True).cache
    one_token = all(len(v) == 1 for v in prompt.verbalizers)
    scores = np.zeros((len(texts), len(prompt.labels)), dtype=np.float64)
    for start in range(0, len(texts), batch_size):
        contexts = [prompt.text_ids(tokenizer, text) + prompt.tail for text in texts[start:start + batch_size]]
        if one_token:
            rows, spans = contexts, [(len(c), [v[0] for v in prompt.verbalizers]) for c in contexts]
        else:
            rows = [c + v for c in contexts for v in prompt.verbalizers]
            spans = [(len(c), v) for c in contexts for v in prompt.verbalizers]
        hidden = _run(body, cache, rows, len(prompt.prefix), tokenizer.pad_token_id)
        # The token after position p is predicted by the hidden state at p: a label starting at
        # position `at` is read from `at - 1` on; one-token labels all from the context's last position.
        if one_token:
            last = torch.tensor([at - 1 for at, _ in spans])
            logp = torch.log_softmax(head(hidden[torch.arange(len(rows)), last]).float(), dim=-1)
            scores[start:start + len(rows)] = logp[:, [v[0] for v in prompt.verbalizers]].double().numpy()
            continue
        row_index = torch.tensor([i for i, (_, v) in enumerate(spans) for _ in v])
        positions = torch.tensor([at - 1 + j for at, v in spans for j in range(len(v))])
        targets = torch.tensor([t for _, v in spans for t in v])
        logp = torch.log_softmax(head(hidden[row_index, positions]).float(), dim=-1)
        token_scores = logp.gather(1, targets[:, None])[:, 0].double()
        per_row = torch.zeros(len(rows), dtype=torch.float64).index_add_(0, row_index, token_scores)
        scores[start:start + len(contexts)] = per_row.view(len(contexts), len(prompt.labels)).numpy()
    return scores


def _run(body: Any, cache: Any, rows: list[list[int]], prefix_length: int, pad: int | None) -> torch.Tensor:
    """Hidden states of right-padded ``rows`` read after the prefix's key/value ``cache``."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad or 0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * (prefix_length + len(r)) + [0] * (width - len(r)) for r in rows])
    batch_cache = copy.deepcopy(cache)
    batch_cache.batch_repeat_interleave(len(rows))
    return body(input_ids=ids, attention_mask=mask, cache=batch_cache, use_cache=True).last_hidden_state


CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al. (2021), "Calibrate Before Use"


def content_free_bias(model: Any, tokenizer: Any, prompt: PromptFormat) -> np.ndarray:
    """The label distribution the prompt gives texts that say nothing (log space): the prompt's own
    lean toward some labels (their order, their frequency in pretraining, the demonstrations')."""
    scores = score_labels(model, tokenizer, prompt, list(CONTENT_FREE), batch_size=len(CONTENT_FREE))
    return np.log(np.exp(_over_labels(scores)).mean(axis=0))


def calibrated(scores: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Label log-probabilities (normalised over the labels) with the content-free lean divided out."""
    return _over_labels(scores) - bias


def _over_labels(scores: np.ndarray) -> np.ndarray:
    """Log-likelihoods renormalised over the label set (log-softmax per text)."""
    return scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)


def draw_demonstrations(texts: list[str], labels: list[str], per_class: int, seed: int) -> list[tuple[str, str]]:
    """``per_class`` (text, label) pairs of each label (all of a label's when it has fewer), drawn
    with ``seed`` and shuffled together so no label's examples come in one block."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, name in enumerate(labels) if name == label]
        chosen += [int(i) for i in rng.permutation(members)[:per_class]]
    order = rng.permutation(len(chosen))
    return [(texts[chosen[i]], labels[chosen[i]]) for i in order]
