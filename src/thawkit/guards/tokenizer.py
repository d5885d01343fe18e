"""Tokenizer/model mismatch: vocabulary against embedding rows, missing special tokens, tokenizer
family against model type, and the unknown-token rate on the user's data."""

from __future__ import annotations

from typing import Any

from thawkit.guards.base import Finding

UNKNOWN_RATE_LIMIT = 0.02


def _expected_tokenizer_names(model_type: str) -> set[str]:
    try:
        from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES
    except ImportError:
        return set()
    entry = TOKENIZER_MAPPING_NAMES.get(model_type)
    if entry is None:
        return set()
    names = entry if isinstance(entry, (tuple, list)) else (entry,)
    return {n.removesuffix("Fast") for n in names if n}


def check_tokenizer(tokenizer: Any, model: Any, texts: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    config = model.config
    embedding_rows = model.get_input_embeddings().num_embeddings if hasattr(model, "get_input_embeddings") else config.vocab_size
    if len(tokenizer) > embedding_rows:
        findings.append(
            Finding(
                "tokenizer",
                f"the tokenizer has {len(tokenizer)} tokens but the model's embedding matrix only {embedding_rows} rows: "
                "ids past the end will crash or read garbage",
                "use the tokenizer saved with the model (pass the same --model), or resize the embeddings",
                "error",
            )
        )
    missing = [name for name in ("pad_token", "cls_token", "sep_token") if getattr(tokenizer, name, None) is None]
    if getattr(tokenizer, "cls_token", None) is None and getattr(tokenizer, "bos_token", None) is not None:
        missing = [m for m in missing if m != "cls_token"]
    if getattr(tokenizer, "sep_token", None) is None and getattr(tokenizer, "eos_token", None) is not None:
        missing = [m for m in missing if m != "sep_token"]
    if missing:
        findings.append(
            Finding("tokenizer", f"the tokenizer lacks special tokens: {', '.join(missing)}", "use the tokenizer that belongs to the model")
        )
    expected = _expected_tokenizer_names(getattr(config, "model_type", ""))
    actual = type(tokenizer).__name__.removesuffix("Fast")
    if expected and actual not in expected and actual not in ("TokenizersBackend", "PreTrainedTokenizer"):
        findings.append(
            Finding(
                "tokenizer",
                f"a {actual} tokenizer with a {config.model_type!r} model (expected {', '.join(sorted(expected))})",
                "load the tokenizer from the model's own folder or hub id",
            )
        )
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is not None and texts:
        ids = [i for text in texts[:500] for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
        rate = sum(1 for i in ids if i == unk_id) / max(len(ids), 1)
        if rate > UNKNOWN_RATE_LIMIT:
            findings.append(
                Finding(
                    "tokenizer",
                    f"{rate:.1%} of the data's tokens are [UNK]: the vocabulary does not cover this text",
                    "use a backbone whose vocabulary covers the language/domain, or normalise the text",
                )
            )
    return findings
