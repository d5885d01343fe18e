"""SQuAD v1.1/v2.0 files: reading with a one-line error naming the field at fault, and writing subsets."""

from __future__ import annotations

from thawkit.data.tables import check_data_path

import collections
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thawkit.errors import DataError


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[dict[str, Any]]  # [{"text", "answer_start"}]; empty: unanswerable
    title: str = ""


def read_squad(path: str | Path, titles: set[str] | None = None) -> list[QAExample]:
    path = Path(path)
    check_data_path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not SQuAD-format JSON ({exc}); fix: a {{'data': [{{'paragraphs': ...}}]}} file") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise DataError(f"{path}: no top-level 'data' list; fix: use the SQuAD v1.1/v2.0 format")
    examples = []
    seen: dict[str, str] = {}  # question id -> where it first appeared
    for a, article in enumerate(payload["data"]):
        where = f"data[{a}]"
        _expect(path, where, article, dict, "an article object with 'paragraphs'")
        title = str(article.get("title", ""))
        if titles is not None and title not in titles:
            continue
        for p, paragraph in enumerate(_expect(path, f"{where}.paragraphs", article.get("paragraphs", []), list, "a list")):
            where_p = f"{where}.paragraphs[{p}]"
            _expect(path, where_p, paragraph, dict, "an object with 'context' and 'qas'")
            context = _expect(path, f"{where_p}.context", paragraph.get("context"), str, "the paragraph text")
            for q, qa in enumerate(_expect(path, f"{where_p}.qas", paragraph.get("qas", []), list, "a list")):
                where_q = f"{where_p}.qas[{q}]"
                _expect(path, where_q, qa, dict, "an object with 'id', 'question', 'answers'")
                qid = qa.get("id")
                if not isinstance(qid, (str, int)) or isinstance(qid, bool):
                    raise DataError(f"{path}: {where_q} has no 'id'; fix: give every question a unique id")
                if str(qid) in seen:
                    raise DataError(f"{path}: {where_q} has id {qid!r}, the id of {seen[str(qid)]} too; fix: give every "
                                    "question a unique id (predictions and scores are keyed by it)")
                seen[str(qid)] = where_q
                question = _expect(path, f"{where_q}.question (id {qid})", qa.get("question"), str, "the question text")
                if not question.strip():
                    raise DataError(f"{path}: {where_q}.question (id {qid}) is blank; fix: write the question, or drop it")
                if not context.strip():
                    raise DataError(f"{path}: {where_p}.context is blank; fix: the paragraph the answers are taken from")
                answers = [] if qa.get("is_impossible") else _expect(path, f"{where_q}.answers (id {qid})", qa.get("answers", []), list, "a list")
                for n, answer in enumerate(answers):
                    where_a = f"{where_q}.answers[{n}] (id {qid})"
                    _expect(path, where_a, answer, dict, "an object with 'text' and 'answer_start'")
                    text = _expect(path, f"{where_a}.text", answer.get("text"), str, "the answer text")
                    if not text.strip():
                        raise DataError(f"{path}: {where_a}.text is empty; fix: the answer span as it appears in the context, "
                                        "or (unanswerable) \"answers\": [] with \"is_impossible\": true")
                    start = answer.get("answer_start")
                    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
                        raise DataError(f"{path}: {where_a}.answer_start is {start!r}; fix: the answer's character offset "
                                        "in its context, as a non-negative integer")
                    if context[start : start + len(text)] != text:
                        raise DataError(f"{path}: answer {text!r} of question {qid} is not at offset {start} of its context; fix: correct answer_start")
                examples.append(QAExample(str(qid), question, context, [dict(a) for a in answers], title))
    if not examples:
        raise DataError(f"{path}: no questions found; fix: check the file")
    return examples


def _expect(path: Path, where: str, value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise DataError(f"{path}: {where} is {found}; fix: it must be {what} (SQuAD v1.1/v2.0 format)")
    return value


def write_squad(examples: list[QAExample], path: str | Path) -> Path:
    """Examples as a SQuAD v1.1/v2.0 file (one paragraph per example), e.g. a subset for training."""
    path = Path(path)
    articles: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for e in examples:
        articles[e.title].append({"context": e.context, "qas": [
            {"id": e.id, "question": e.question, "answers": e.answers, **({} if e.answers else {"is_impossible": True})}]})
    payload = {"version": "thawkit", "data": [{"title": t, "paragraphs": p} for t, p in articles.items()]}
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


__all__ = ["QAExample", "read_squad", "write_squad"]
