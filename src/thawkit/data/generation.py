"""Generation data: what a decoder learns to write, three shapes of file, read into one.

- chat ``messages`` (JSONL, OpenAI's shape): ``{"messages": [{"role": "user", "content": ...},
  {"role": "assistant", "content": ...}]}``; the last message is the assistant's, the completion;
- instruction / input / output (Alpaca's shape): the prompt is the instruction, then the input;
- prompt / completion columns (CSV, TSV, JSONL, Parquet): guessed from common names, or named with
  ``--prompt-col`` / ``--completion-col``.

Every example becomes (prompt messages, completion). Rows with the same prompt are one *group*:
several references of one input (E2E NLG has ~8 per meaning representation). A held-out split
takes whole groups, never a reference of a prompt the model trains on, and generation metrics
score each prompt once against all its references.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thawkit.data.classification import describe_row, describe_rows, is_missing, pick_column
from thawkit.data.tables import TableFormat, read_table
from thawkit.errors import DataError

PROMPT_GUESSES = ("prompt", "input", "source", "question", "src")
COMPLETION_GUESSES = ("completion", "output", "response", "target", "answer", "tgt")
ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Example:
    """One training example: the conversation up to the answer, and the answer."""

    prompt: tuple[tuple[str, str], ...]  # (role, content) pairs, ending with a user turn
    completion: str

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.prompt]

    @property
    def group(self) -> str:
        """Examples with this key share their prompt (references of one input)."""
        return json.dumps(self.prompt)

    @property
    def prompt_text(self) -> str:
        """The prompt as one text (the last user turn; what a tokenizer guard or a profile reads)."""
        return self.prompt[-1][1]


@dataclass
class GenerationData:
    train: list[Example]
    validation: list[Example]
    test: list[Example] | None
    validation_source: str
    data_format: str


def _turns(path: Path, index: int, value: Any) -> list[tuple[str, str]]:
    """A row's messages as (role, content), each checked."""
    where = f"{path}: {describe_row(path, index)}"
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: 'messages' is not a list of messages; fix: write "
                        '[{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]')
    turns = []
    for number, message in enumerate(value, start=1):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise DataError(f"{where}: message {number} lacks a 'role' and a text 'content'; fix: "
                            '{"role": "user", "content": "..."}')
        if message["role"] not in ROLES:
            raise DataError(f"{where}: message {number} has role {message['role']!r}; fix: use one of {', '.join(ROLES)}")
        turns.append((message["role"], message["content"]))
    return turns


def _messages_example(path: Path, index: int, value: Any) -> Example:
    where = f"{path}: {describe_row(path, index)}"
    turns = _turns(path, index, value)
    if turns[-1][0] != "assistant":
        raise DataError(f"{where}: the last message is the {turns[-1][0]}'s, not the assistant's; fix: end each conversation "
                        "with the assistant's answer (the completion the model learns)")
    if len(turns) < 2:
        raise DataError(f"{where}: only the assistant's message; fix: add the user's message it answers")
    if not turns[-1][1].strip():
        raise DataError(f"{where}: the assistant's answer is empty; fix: fill it in or drop the row")
    return Example(tuple(turns[:-1]), turns[-1][1])


def _cell(frame: Any, column: str, index: int) -> str:
    value = frame[column].iloc[index]
    return "" if is_missing(value) else str(value)


def _require(frame: Any, path: Path, column: str, what: str) -> None:
    missing = [i for i, value in enumerate(frame[column].tolist()) if is_missing(value)]
    if missing:
        raise DataError(f"{path}: empty {what} in column {column!r} at {describe_rows(path, missing)}; fix: fill them in or drop those rows")


def read_generation_file(path: str | Path, prompt_col: str | None = None, completion_col: str | None = None,
                         fmt: TableFormat | None = None) -> tuple[list[Example], str]:
    """The file's examples and the format they were read as (for thawkit.json)."""
    path = Path(path)
    frame = read_table(path, fmt=fmt)
    if len(frame) == 0:
        raise DataError(f"{path}: no rows; fix: add examples")
    columns = set(frame.columns)
    if prompt_col is None and completion_col is None and "messages" in columns:
        return [_messages_example(path, i, value) for i, value in enumerate(frame["messages"].tolist())], "chat messages"
    if prompt_col is None and completion_col is None and {"instruction", "output"} <= columns:
        _require(frame, path, "instruction", "instructions")
        _require(frame, path, "output", "outputs")
        has_input = "input" in columns
        examples = []
        for i in range(len(frame)):
            extra = _cell(frame, "input", i).strip() if has_input else ""
            prompt = _cell(frame, "instruction", i) + (f"\n\n{extra}" if extra else "")
            examples.append(Example((("user", prompt),), _cell(frame, "output", i)))
        return examples, "instruction/input/output"
    prompt = pick_column(frame, path, prompt_col, PROMPT_GUESSES, "--prompt-col")
    completion = pick_column(frame, path, completion_col, COMPLETION_GUESSES, "--completion-col")
    if prompt == completion:
        raise DataError(f"{path}: the prompt and the completion are the same column {prompt!r}; fix: name two columns with "
                        "--prompt-col and --completion-col")
    _require(frame, path, prompt, "prompts")
    _require(frame, path, completion, "completions")
    examples = [Example((("user", _cell(frame, prompt, i)),), _cell(frame, completion, i)) for i in range(len(frame))]
    return examples, f"prompt/completion columns ({prompt!r}, {completion!r})"


def read_prompts(path: str | Path, prompt_col: str | None = None) -> list[Any]:
    """Prompts to answer (``predict --file``): .txt one per line, a table's prompt column, or chat
    ``messages`` (a trailing assistant message, if any, is dropped: it is what the model writes)."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        from thawkit.data.texts import read_texts

        return list(read_texts(path, flag="--file"))
    frame = read_table(path)
    if prompt_col is None and "messages" in frame.columns:
        conversations = []
        for i, value in enumerate(frame["messages"].tolist()):
            turns = _turns(path, i, value)
            if turns[-1][0] == "assistant":
                if len(turns) < 2:
                    raise DataError(f"{path}: {describe_row(path, i)}: only the assistant's message; fix: add the user's message "
                                    "it answers")
                turns = turns[:-1]
            conversations.append([{"role": role, "content": content} for role, content in turns])
        return conversations
    column = pick_column(frame, path, prompt_col, (*PROMPT_GUESSES, "instruction", "text"), "--text-col")
    _require(frame, path, column, "prompts")
    return [str(v) for v in frame[column].tolist()]


def split_by_group(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held out): a seeded share of the distinct prompts, with all of their references."""
    groups = list(dict.fromkeys(example.group for example in examples))
    random.Random(seed).shuffle(groups)
    held = set(groups[: max(1, int(round(len(groups) * fraction)))])
    return [e for e in examples if e.group not in held], [e for e in examples if e.group in held]


def load_generation_data(data: str | Path, validation: str | Path | None, test: str | Path | None, fraction: float, seed: int,
                         prompt_col: str | None = None, completion_col: str | None = None,
                         fmt: TableFormat | None = None) -> GenerationData:
    train, data_format = read_generation_file(data, prompt_col, completion_col, fmt)
    if validation is not None:
        held, _ = read_generation_file(validation, prompt_col, completion_col, fmt)
        source = str(validation)
    else:
        prompts = len({example.group for example in train})
        if prompts < 2:
            raise DataError(f"{data}: every row has the same prompt, so no prompt can be held out for validation; "
                            "fix: pass --validation FILE")
        train, held = split_by_group(train, fraction, seed)
        source = f"random {fraction:.0%} of the distinct prompts of {data}, all their references (seed {seed})"
    tested = read_generation_file(test, prompt_col, completion_col, fmt)[0] if test is not None else None
    return GenerationData(train, held, tested, source, data_format)


def group_references(examples: list[Example]) -> tuple[list[Example], list[list[str]]]:
    """One example per distinct prompt (the first), and every completion of that prompt."""
    firsts: dict[str, Example] = {}
    references: dict[str, list[str]] = {}
    for example in examples:
        firsts.setdefault(example.group, example)
        references.setdefault(example.group, []).append(example.completion)
    return list(firsts.values()), [references[key] for key in firsts]
