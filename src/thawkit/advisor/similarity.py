"""Domain similarity between the user's texts and general English, measured on the backbone.

Signals, each mapped to [0, 1] (1 = like general English):
- fragmentation: sub-word tokens per word on the data against the general sample (a vocabulary
  that fits the domain splits its words no more than it splits everyday English);
- unknown tokens: the tokenizer's [UNK] rate on the data above the general sample's;
- embedding closeness: how near each data sentence comes to its nearest general sentence, relative
  to how near general sentences come to each other;
- masked-LM pseudo-perplexity, only where the checkpoint has a trained MLM head.
The score is the weighted mean of the signals available.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from thawkit.data.probe import general_sentences

WEIGHTS = {"fragmentation": 0.3, "unknown_tokens": 0.1, "embedding": 0.4, "mlm": 0.2}
_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass
class DomainSimilarity:
    score: float
    parts: dict[str, float]
    details: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fragmentation(tokenizer: Any, texts: list[str]) -> tuple[float, float]:
    """(sub-word tokens per word, share of [UNK] tokens)."""
    words = tokens = unknown = 0
    unk_id = tokenizer.unk_token_id
    for text in texts:
        text_words = _WORD.findall(text)
        words += len(text_words)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        tokens += len(ids)
        unknown += sum(1 for i in ids if unk_id is not None and i == unk_id)
    return tokens / max(words, 1), unknown / max(tokens, 1)


@torch.inference_mode()
def mean_pooled_embeddings(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 32) -> torch.Tensor:
    """(n, hidden): mean of the last layer over real tokens."""
    model.eval()
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
        states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        chunks.append((states * mask).sum(1) / mask.sum(1))
    return torch.cat(chunks)


def _embedding_score(model: Any, tokenizer: Any, data: list[str], general: list[str]) -> tuple[float, float]:
    """How close data sentences come to general English in embedding space.

    For each data sentence, the cosine to its nearest general sentence; averaged, and divided by
    the same quantity for general sentences among themselves (leave-one-out). Centroid distances
    are not used: encoder embeddings share a dominant direction that hides domain differences.
    """
    gen = torch.nn.functional.normalize(mean_pooled_embeddings(model, tokenizer, general), dim=1)
    dat = torch.nn.functional.normalize(mean_pooled_embeddings(model, tokenizer, data), dim=1)
    within = gen @ gen.T
    within.fill_diagonal_(-1.0)
    reference = within.max(1).values.mean()
    ratio = float((dat @ gen.T).max(1).values.mean() / reference)
    # Measured with MiniLM-L6: SST-2 0.74, financial news 0.68, biomedical abstracts 0.44, code 0.37.
    return max(0.0, min(1.0, (ratio - 0.3) / 0.45)), ratio


@torch.inference_mode()
def pseudo_perplexity(mlm: Any, tokenizer: Any, texts: list[str], max_tokens: int = 400) -> float:
    """Mask each token in turn (up to ``max_tokens`` positions) and average the negative log-likelihood."""
    mlm.eval()
    losses = []
    for text in texts:
        ids = tokenizer(text, truncation=True, max_length=64, return_tensors="pt")["input_ids"][0]
        for position in range(1, len(ids) - 1):
            masked = ids.clone()
            masked[position] = tokenizer.mask_token_id
            logits = mlm(input_ids=masked.unsqueeze(0)).logits[0, position]
            losses.append(float(torch.nn.functional.cross_entropy(logits.unsqueeze(0), ids[position].unsqueeze(0))))
            if len(losses) >= max_tokens:
                return math.exp(sum(losses) / len(losses))
    return math.exp(sum(losses) / max(len(losses), 1))


def measure_domain_similarity(
    texts: list[str], tokenizer: Any, encoder: Any, mlm: Any | None = None, sample_size: int = 200, seed: int = 0
) -> DomainSimilarity:
    rng = random.Random(seed)
    data = rng.sample(texts, min(sample_size, len(texts)))
    general = general_sentences()
    frag_data, unk_data = _fragmentation(tokenizer, data)
    frag_general, unk_general = _fragmentation(tokenizer, general)
    ratio = frag_data / frag_general
    parts = {
        # SST-2 splits 1.10x as much as the general sample, biomedical text 1.26x.
        "fragmentation": max(0.0, min(1.0, 1.0 - (ratio - 1.0) / 0.4)),
        "unknown_tokens": max(0.0, 1.0 - max(0.0, unk_data - unk_general) * 20),
    }
    embedding, neighbour_ratio = _embedding_score(encoder, tokenizer, data, general)
    parts["embedding"] = embedding
    details = {
        "tokens_per_word_data": frag_data,
        "tokens_per_word_general": frag_general,
        "unknown_rate_data": unk_data,
        "nearest_neighbour_ratio": neighbour_ratio,
    }
    if mlm is not None:
        ppl_data = pseudo_perplexity(mlm, tokenizer, data[:40])
        ppl_general = pseudo_perplexity(mlm, tokenizer, general[:40])
        parts["mlm"] = max(0.0, min(1.0, math.log(ppl_general) / max(math.log(ppl_data), 1e-6)))
        details.update({"pseudo_perplexity_data": ppl_data, "pseudo_perplexity_general": ppl_general})
    total = sum(WEIGHTS[k] for k in parts)
    score = sum(WEIGHTS[k] * v for k, v in parts.items()) / total
    return DomainSimilarity(score=round(score, 4), parts={k: round(v, 4) for k, v in parts.items()}, details=details)
