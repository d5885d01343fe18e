"""Tiny random models and toy data, for thawkit's tests and for users' own quick checks.

Models are built from a config (2 layers, hidden 32) with the embedded MiniLM's vocabulary, so
nothing is downloaded and every architecture trains in seconds.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from thawkit.models.backbone import DEFAULT_MODEL, resolve_model_path

ARCHITECTURES = ("bert", "roberta", "distilbert", "deberta-v2")
DECODER_ARCHITECTURES = ("llama", "gpt2", "qwen2")


def tiny_config(arch: str = "bert", num_layers: int = 2, hidden: int = 32, vocab_size: int = 30522):
    from transformers import BertConfig, DebertaV2Config, DistilBertConfig, RobertaConfig

    common = dict(vocab_size=vocab_size, max_position_embeddings=130, pad_token_id=0)
    if arch == "bert":
        return BertConfig(hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=2, intermediate_size=2 * hidden, **common)
    if arch == "roberta":
        return RobertaConfig(hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=2, intermediate_size=2 * hidden, type_vocab_size=2, **common)
    if arch == "distilbert":
        return DistilBertConfig(dim=hidden, n_layers=num_layers, n_heads=2, hidden_dim=2 * hidden, **common)
    if arch == "deberta-v2":
        return DebertaV2Config(
            hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=2, intermediate_size=2 * hidden,
            relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"], type_vocab_size=0, **common,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}; choose from {ARCHITECTURES}")


def make_tiny_model(path: str | Path, arch: str = "bert", num_layers: int = 2, hidden: int = 32, seed: int = 0,
                    vocab_size: int = 30522) -> Path:
    """Save a random encoder and the MiniLM tokenizer to ``path``; ``--model path`` then loads it."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    if (path / "config.json").exists():
        return path
    torch.manual_seed(seed)
    model = AutoModel.from_config(tiny_config(arch, num_layers, hidden, vocab_size))
    model.save_pretrained(str(path))
    AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL)).save_pretrained(str(path))
    return path


def tiny_decoder_config(arch: str = "llama", num_layers: int = 2, hidden: int = 32, vocab_size: int = 512):
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    if arch == "llama":
        return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=num_layers,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, tie_word_embeddings=True,
                           bos_token_id=0, eos_token_id=0)
    if arch == "qwen2":
        return Qwen2Config(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=num_layers,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, bos_token_id=0, eos_token_id=0)
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=num_layers, n_head=2, n_positions=256,
                          bos_token_id=0, eos_token_id=0)
    raise ValueError(f"unknown tiny decoder {arch!r}; choose from {DECODER_ARCHITECTURES}")


def tiny_decoder_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer (as GPT-2, Llama-3, SmolLM and Qwen use) trained on the toy texts: an
    end-of-text token and no padding token, like most decoders' tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = _POSITIVE + _NEGATIVE + _NEUTRAL + ["okay", "average", "fine", "mixed", "Peter", "Blackburn", "Brussels", "visited",
                                                "When", "was", "the", "lighthouse", "built", "plane", "taking", "off"]
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))] + [text for text, _ in toy_sentiment_rows(200)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   model_max_length=256)


def make_tiny_decoder(path: str | Path, arch: str = "llama", num_layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """Save a random decoder (Llama, Qwen2 or GPT-2 layout) and a byte-level BPE tokenizer without a
    padding token to ``path``; ``--model path`` then loads it."""
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if (path / "config.json").exists():
        return path
    torch.manual_seed(seed)
    tokenizer = tiny_decoder_tokenizer()
    model = AutoModelForCausalLM.from_config(tiny_decoder_config(arch, num_layers, hidden, len(tokenizer)))
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


_POSITIVE = ["great", "excellent", "wonderful", "loved", "superb", "delightful", "fantastic", "brilliant"]
_NEGATIVE = ["awful", "terrible", "boring", "hated", "dreadful", "poor", "horrible", "dull"]
_NEUTRAL = ["the", "movie", "plot", "actor", "scene", "story", "film", "music", "ending", "cast", "was", "and"]


def toy_sentiment_rows(n: int = 200, seed: int = 0, classes: int = 2) -> list[tuple[str, str]]:
    """Short texts whose label is given by one class keyword among filler words."""
    rng = random.Random(seed)
    keywords = {"positive": _POSITIVE, "negative": _NEGATIVE, "neutral": ["okay", "average", "fine", "mixed"]}
    names = list(keywords)[:classes]
    rows = []
    for i in range(n):
        label = names[i % classes]
        words = rng.sample(_NEUTRAL, 5) + [rng.choice(keywords[label])]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_toy_csv(path: str | Path, n: int = 200, seed: int = 0, classes: int = 2) -> Path:
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(toy_sentiment_rows(n, seed, classes))
    return path
