"""How a decoder sees a generation example, and how it writes: the prompt rendered by the model's
own chat template where it has one (else the prompt, a newline, and the completion closed by the
end-of-text token), tokenized so that only the completion's tokens carry a loss; batched greedy,
beam or sampled generation with left padding; BLEU, ROUGE-L and exact match from sacrebleu and
rouge-score, each prompt against all of its references."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100  # label of a token the loss skips (the prompt's, the padding's)


def not_a_decoder(config: Any) -> bool:
    """An encoder (BERT-style: transformers gives some a causal-LM head, but they were pretrained to fill
    masks, not to write), an encoder-decoder, or a model with no causal-LM head at all."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    model_type = config.model_type
    return (model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
            or bool(getattr(config, "is_encoder_decoder", False)))


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer: Any, messages: list[dict[str, str]], completion: str | None = None) -> tuple[str, str]:
    """(prompt text, completion text): what the model reads, and what it learns to write after it.

    With a chat template, the prompt ends with the template's generation prompt (the assistant
    turn's opening) and the completion is the rest of the rendered conversation (the answer and
    the template's end of turn). Without one, the user turns joined, a newline, then the completion
    and the end-of-text token."""
    if has_chat_template(tokenizer):
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if completion is None:
            return prompt, ""
        full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": completion}], tokenize=False)
        if full.startswith(prompt):
            return prompt, full[len(prompt):]
        return prompt, completion + (tokenizer.eos_token or "")  # a template that renders the answer turn differently
    prompt = "\n\n".join(m["content"] for m in messages) + "\n"
    return prompt, "" if completion is None else completion + (tokenizer.eos_token or "")


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """A chat template writes its own begin-of-text; a plain prompt gets the tokenizer's special tokens."""
    return list(tokenizer(text, add_special_tokens=not has_chat_template(tokenizer))["input_ids"])


def example_tokens(tokenizer: Any, messages: list[dict[str, str]], completion: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids), untruncated."""
    prompt, answer = render(tokenizer, messages, completion)
    return prompt_ids(tokenizer, prompt), list(tokenizer(answer, add_special_tokens=False)["input_ids"])


def encode_example(tokenizer: Any, messages: list[dict[str, str]], completion: str, max_length: int) -> dict[str, list[int]] | None:
    """input_ids, attention_mask and labels (the prompt's tokens masked); a completion that does not
    fit after the prompt is cut at ``max_length``; None when no completion token fits at all."""
    return fit_example(*example_tokens(tokenizer, messages, completion), max_length)


def fit_example(head: list[int], tail: list[int], max_length: int) -> dict[str, list[int]] | None:
    """The row of ``encode_example`` from already tokenized parts."""
    room = max_length - len(head)
    if room <= 0 or not tail:
        return None
    tail = tail[:room]
    ids = head + tail
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE] * len(head) + tail}


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Tokens that end an answer: the end-of-text token, the generation config's, and the special
    tokens the chat template closes an answer with (``<|im_end|>``, ``<|eot_id|>``)."""
    stops: list[int] = []
    if tokenizer.eos_token_id is not None:
        stops.append(int(tokenizer.eos_token_id))
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    stops += [int(i) for i in (configured if isinstance(configured, list) else [configured]) if i is not None]
    if has_chat_template(tokenizer):
        _, closing = render(tokenizer, [{"role": "user", "content": "a"}], "b")
        special = set(tokenizer.all_special_ids)
        stops += [i for i in tokenizer(closing, add_special_tokens=False)["input_ids"] if i in special]
    return list(dict.fromkeys(stops))


def generation_options(max_new_tokens: int, num_beams: int = 1, do_sample: bool = False, temperature: float = 1.0,
                       top_p: float = 1.0) -> dict[str, Any]:
    """``generate`` keywords: greedy unless beams or sampling are asked for (sampling knobs only when sampling)."""
    options: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "num_beams": int(num_beams), "do_sample": bool(do_sample)}
    if do_sample:
        options.update(temperature=float(temperature), top_p=float(top_p))
    else:  # the checkpoint's generation config may set sampling knobs; greedy ignores them, say so to transformers
        options.update(temperature=None, top_p=None, top_k=None)
    return options


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int  # up to and including the token that ended it
    finish_reason: str  # "stop": an end token (or a stop string); "length": max_new_tokens ran out


def generate_texts(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], options: dict[str, Any],
                   batch_size: int = 16, streamer: Any = None) -> list[str]:
    """The answer to each conversation, in order."""
    return [a.text for a in generate_answers(model, tokenizer, conversations, options, batch_size, streamer)]


def generation_inputs(model: Any, ids: Any, mask: Any) -> tuple[Any, dict[str, Any], int]:
    """(what generates, its inputs, how many leading output tokens are the prompt's). A prompt-learning
    model (prompt tuning, p-tuning) generates from its virtual tokens' embeddings put in front of the
    prompt's: peft's own ``generate`` with a KV cache garbles every token after the first (measured:
    smollm2-135m prompt-tuned on E2E NLG, one run: BLEU 0.6 through it, 39.2 this way; peft#1391),
    and without a cache each token costs the whole prefix again."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not getattr(config, "is_prompt_learning", False):
        return model, {"input_ids": ids, "attention_mask": mask}, ids.shape[1]
    embeddings = model.word_embeddings(ids)
    prompt = model.get_prompt(batch_size=len(ids)).to(embeddings.dtype)
    return model.base_model, {"inputs_embeds": torch.cat([prompt, embeddings], 1),
                              "attention_mask": torch.cat([mask.new_ones(len(ids), prompt.shape[1]), mask], 1)}, 0


@torch.inference_mode()
def generate_answers(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], options: dict[str, Any],
                     batch_size: int = 16, streamer: Any = None, stop: list[str] | None = None,
                     adapter_names: list[str] | None = None) -> list[Answer]:
    """The answer to each conversation, in order: batches of similar length, left-padded; ``stop``:
    strings that also end an answer (cut before them); ``adapter_names``: the LoRA adapter that
    writes each answer, several in one batch (peft's mixed-adapter batches)."""
    prompts = [prompt_ids(tokenizer, render(tokenizer, messages)[0]) for messages in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(tokenizer, model)
    model.eval()
    extra = {"stop_strings": list(stop), "tokenizer": tokenizer} if stop else {}
    answers: dict[int, Answer] = {}
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chosen)
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in chosen], device=device)
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chosen], device=device)
        generator, inputs, front = generation_inputs(model, ids, mask)
        routing = {"adapter_names": [adapter_names[i] for i in chosen]} if adapter_names is not None else {}
        output = generator.generate(**inputs, pad_token_id=pad, eos_token_id=stops, streamer=streamer, **options, **extra, **routing)
        for index, row in zip(chosen, output[:, front:].tolist()):
            ended = next((i for i, token in enumerate(row) if token in stops), None)
            written = row if ended is None else row[: ended + 1]
            while ended is None and written and written[-1] == pad:  # padding after a stop string ended this row
                written = written[:-1]
            text = tokenizer.decode(written, skip_special_tokens=True).lstrip()  # answers are stripped: so is what stops match
            cut = min((text.find(s) for s in stop or () if s in text), default=-1)
            # Short of max_new_tokens without an end token: a stop string ended it.
            finish = "stop" if ended is not None or cut >= 0 or len(written) < options["max_new_tokens"] else "length"
            answers[index] = Answer((text[:cut] if cut >= 0 else text).strip(), len(prompts[index]), len(written), finish)
    return [answers[i] for i in range(len(prompts))]


def text_scores(hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, 13a tokenization, every reference of a prompt), ROUGE-L F1 (rouge-score,
    the best reference per prompt, stemmed) and exact match (against any reference), all 0-100."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if not hypotheses:
        return {}
    streams = max(len(refs) for refs in references)
    # sacrebleu takes reference streams; a prompt with fewer references leaves the rest empty (None: skipped).
    ref_streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(streams)]
    bleu = sacrebleu.corpus_bleu(hypotheses, ref_streams).score  # type: ignore[arg-type]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = sum(scorer.score_multi(refs, hyp)["rougeL"].fmeasure for hyp, refs in zip(hypotheses, references)) / len(hypotheses)
    exact = sum(_normal(hyp) in {_normal(r) for r in refs} for hyp, refs in zip(hypotheses, references)) / len(hypotheses)
    return {"bleu": float(bleu), "rouge_l": 100.0 * float(rouge), "exact_match": 100.0 * float(exact)}


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def token_accuracy(predictions: Any, labels: Any) -> float:
    """Next-token accuracy on the completion tokens (predictions: argmax ids aligned with the inputs)."""
    import numpy as np

    predicted, gold = np.asarray(predictions)[:, :-1], np.asarray(labels)[:, 1:]
    keep = gold != IGNORE
    return float((predicted[keep] == gold[keep]).mean()) if keep.any() else float("nan")


def completion_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None, return_outputs: bool = False) -> Any:
    """The causal-LM loss computed where it is defined: the LM head (a 49k-token vocabulary on SmolLM2,
    ~20 % of a small decoder's matmuls per token) and the softmax over it run only from the first
    labelled position of the batch on (``logits_to_keep``), not over every prompt token. Equal to the
    model's own loss (the same positions, the same reduction); with ``return_outputs`` also the
    model's outputs, whose logits cover the kept positions only (``argmax_aligned`` realigns them).
    None where the model does not take ``logits_to_keep``."""
    import torch.nn.functional as F

    labels = inputs["labels"]
    labelled = (labels != IGNORE).any(0).nonzero()
    if not len(labelled) or int(labelled[0]) == 0:
        return None
    first = int(labelled[0])
    keep = labels.shape[1] - first + 1  # logits at positions first-1 .. end predict tokens first .. end
    try:
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=keep)
    except TypeError:
        return None
    logits = outputs.logits[:, -keep:-1].float()  # virtual tokens (prompt tuning) sit in front, outside the kept span
    targets = labels[:, first:].to(logits.device)
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE).sum()
    loss = total / count.to(total.device) if hasattr(count, "to") else total / count
    return (loss, outputs) if return_outputs else loss


def argmax_aligned(logits: Any, labels: Any) -> Any:
    """The Trainer's per-batch reduction of (batch, tokens, vocabulary) logits to predicted ids, so
    evaluation never holds the whole vocabulary per token, aligned with the labels: prompt tuning's
    virtual tokens (logits longer than the labels) are dropped from the front; logits of the kept
    positions only (``completion_loss``) are padded in front with ignored ids."""
    if isinstance(logits, tuple):
        logits = logits[0]
    predicted = logits.argmax(-1)
    if labels is not None and predicted.shape[1] > labels.shape[1]:
        predicted = predicted[:, -labels.shape[1]:]
    if labels is not None and predicted.shape[1] < labels.shape[1]:
        front = torch.full((predicted.shape[0], labels.shape[1] - predicted.shape[1]), IGNORE, dtype=predicted.dtype,
                           device=predicted.device)
        predicted = torch.cat([front, predicted], 1)
    return predicted
