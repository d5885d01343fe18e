"""Token-classification data: CoNLL-style column files or JSONL with ``tokens`` and ``tags``.

Tags in IOB1, IOB2 or BIOES are normalised to IOB2. Sentences longer than the max length are split
into chunks of whole words, never silently truncated.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thawkit.data.tables import check_data_path, decode_utf8
from thawkit.errors import DataError

Sentence = tuple[list[str], list[str]]  # (words, IOB2 tags)


@dataclass
class NerData:
    labels: list[str]  # IOB2 tag names in id order, "O" first
    train: list[Sentence]
    validation: list[Sentence]
    test: list[Sentence] | None
    validation_source: str

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def entity_types(self) -> list[str]:
        return sorted({tag[2:] for tag in self.labels if tag != "O"})


def _read_conll(path: Path, text: str) -> list[tuple[list[str], list[str], int]]:
    sentences, words, tags, start_line = [], [], [], 1
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("-DOCSTART-"):
            continue
        if not stripped:
            if words:
                sentences.append((words, tags, start_line))
            words, tags, start_line = [], [], number + 1
            continue
        columns = stripped.split()
        if len(columns) < 2:
            raise DataError(f"{path}: line {number} has one column ({stripped!r}); fix: write 'TOKEN TAG' per line, a blank line between sentences")
        if not words:
            start_line = number
        words.append(columns[0])
        tags.append(columns[-1])
    if words:
        sentences.append((words, tags, start_line))
    return sentences


def _read_jsonl(path: Path, text: str) -> list[tuple[list[str], list[str], int]]:
    sentences = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg}); fix: one JSON object per line") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number} is a JSON {type(record).__name__}, not an object; fix: write "
                            "{\"tokens\": [...], \"tags\": [...]} on every line")
        words, tags = record.get("tokens"), record.get("tags", record.get("ner_tags"))
        if not isinstance(words, list) or not isinstance(tags, list):
            raise DataError(f"{path}: line {number} lacks 'tokens' and 'tags' lists; fix: write {{\"tokens\": [...], \"tags\": [...]}}")
        sentences.append((_tokens(path, number, words), _tag_names(path, number, tags), number))
    return sentences


def _tokens(path: Path, number: int, words: list[Any]) -> list[str]:
    if not words:
        raise DataError(f"{path}: line {number} has no tokens; fix: drop empty sentences")
    for position, word in enumerate(words):
        if not isinstance(word, str) or not word.strip():
            raise DataError(f"{path}: line {number}, token {position} is {word!r}; fix: every token a non-empty string "
                            "(one word per token)")
    return words


def _tag_names(path: Path, number: int, tags: list[Any]) -> list[str]:
    for position, tag in enumerate(tags):
        if isinstance(tag, bool) or not isinstance(tag, str):
            hint = (" (a class id: thawkit needs the tag names; a Hugging Face dataset has them in "
                    "features['ner_tags'].feature.names)" if isinstance(tag, int) and not isinstance(tag, bool) else "")
            raise DataError(f"{path}: line {number}, tag {position} is {tag!r}{hint}; fix: tag names such as \"B-PER\", \"I-PER\", \"O\"")
    return tags


def normalise_tags(tags: list[str]) -> list[str]:
    """IOB1 / IOB2 / BIOES -> IOB2: every entity starts with B-, continues with I-."""
    result = []
    previous_type = None
    for tag in tags:
        if tag == "O" or tag == "":
            result.append("O")
            previous_type = None
            continue
        prefix, _, entity = tag.partition("-")
        if not entity:  # a bare type such as "PER": treat as inside
            prefix, entity = "I", tag
        prefix = prefix.upper()
        if prefix in ("B", "S"):
            result.append(f"B-{entity}")
        elif prefix in ("I", "E", "M"):
            # IOB1 starts entities with I-; so does an I- after O or after another type.
            result.append(f"I-{entity}" if previous_type == entity else f"B-{entity}")
        else:
            raise ValueError(tag)
        previous_type = None if prefix in ("E", "S") else entity
    return result


def read_ner_file(path: str | Path) -> list[Sentence]:
    path = Path(path)
    check_data_path(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty; fix: 'TOKEN TAG' lines with blank lines between sentences, or JSONL")
    text = decode_utf8(path, raw)
    records = _read_jsonl(path, text) if path.suffix.lower() in (".jsonl", ".json") else _read_conll(path, text)
    sentences = []
    for words, tags, line in records:
        if len(words) != len(tags):
            raise DataError(f"{path}: the sentence at line {line} has {len(words)} tokens but {len(tags)} tags; fix: one tag per token")
        try:
            sentences.append((words, normalise_tags(tags)))
        except ValueError as exc:
            raise DataError(f"{path}: unknown tag {exc.args[0]!r} in the sentence at line {line}; fix: use IOB1, IOB2 or BIOES tags") from None
    if not sentences:
        raise DataError(f"{path}: no sentences found; fix: 'TOKEN TAG' lines with blank lines between sentences")
    return sentences


def load_ner_data(data: str | Path, validation: str | Path | None = None, test: str | Path | None = None,
                  val_fraction: float = 0.1, seed: int = 42) -> NerData:
    train = read_ner_file(data)
    types = sorted({tag[2:] for _, tags in train for tag in tags if tag != "O"})
    if not types:
        raise DataError(f"{data}: no entities in the training data (every tag is O); fix: tag some entities")
    labels = ["O", *(f"{p}-{t}" for t in types for p in ("B", "I"))]

    def check(sentences: list[Sentence], path: str | Path) -> list[Sentence]:
        for index, (_, tags) in enumerate(sentences):
            unseen = [t for t in tags if t not in labels]
            if unseen:
                raise DataError(f"{path}: entity type {unseen[0][2:]!r} in sentence {index + 1} never occurs in the training data; fix: add training examples or drop it")
        return sentences

    if validation is not None:
        val = check(read_ner_file(validation), validation)
        source = str(validation)
    else:
        if len(train) < 4:
            raise DataError(f"{data}: only {len(train)} sentences, too few to hold out validation; fix: pass --validation FILE")
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        cut = max(1, int(round(len(train) * val_fraction)))
        val = [train[i] for i in order[:cut]]
        train = [train[i] for i in order[cut:]]
        source = f"random {val_fraction:.0%} split of {data} (seed {seed})"
    return NerData(labels, train, val, check(read_ner_file(test), test) if test is not None else None, source)


def word_chunks(words: list[str], tokenizer: Any, max_length: int) -> list[tuple[int, Any]]:
    """(index of its first word, encoding) for each piece a sentence is tokenized in: sentences that
    do not fit ``max_length`` are split between words."""
    pieces = [len(tokenizer(word, add_special_tokens=False)["input_ids"]) or 1 for word in words]
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    chunks, start, used = [], 0, 0
    for index, count in enumerate(pieces):
        if used + count > budget and index > start:
            chunks.append((start, index))
            start, used = index, 0
        used += count
    chunks.append((start, len(words)))
    return [(begin, tokenizer(words[begin:end], is_split_into_words=True, truncation=True, max_length=max_length))
            for begin, end in chunks]


def first_token_words(encoded: Any) -> list[int | None]:
    """Per position: the (chunk-local) word whose tag it carries, on the first sub-token of each word; None elsewhere."""
    marks, previous = [], None
    for word_id in encoded.word_ids():
        marks.append(None if word_id is None or word_id == previous else word_id)
        previous = word_id
    return marks


def labelled_words(words: list[str], tokenizer: Any, max_length: int) -> list[list[int]]:
    """For each feature ``chunk_and_align`` makes of ``words``: the sentence-wide index of the word
    each tagged position stands for, in position order (a word the tokenizer gives no token is absent)."""
    return [[begin + word for word in first_token_words(encoded) if word is not None]
            for begin, encoded in word_chunks(words, tokenizer, max_length)]


def chunk_and_align(sentence: Sentence, tokenizer: Any, max_length: int, label_to_id: dict[str, int]) -> list[dict[str, Any]]:
    """Sub-word features for one sentence: the first sub-token of each word carries the word's tag,
    the rest -100 (ignored by the loss); sentences that do not fit are split between words."""
    words, tags = sentence
    features = []
    for begin, encoded in word_chunks(words, tokenizer, max_length):
        labels = [-100 if word is None else label_to_id[tags[begin + word]] for word in first_token_words(encoded)]
        features.append({**{k: list(v) for k, v in encoded.items()}, "labels": labels})
    return features
