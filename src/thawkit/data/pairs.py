"""Sentence-pair data for similarity: two text columns and an optional score, read with one-line
errors naming the row, and the score scale checked (scores run from 0 to the scale's top)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thawkit.errors import DataError

if TYPE_CHECKING:
    from thawkit.config import TrainConfig

SCORE_COLUMNS = ("score", "similarity", "label", "labels")


@dataclass
class PairData:
    train: Any
    validation: Any
    test: Any | None
    kind: str  # "scored", "binary" or "positive"
    max_score: float
    validation_source: str


def read_pairs(path: Path, text_col: str | None, pair_col: str | None, score_col: str | None, fmt: Any = None) -> tuple[Any, str | None]:
    from thawkit.data.classification import check_texts, pick_column
    from thawkit.data.tables import read_table

    frame = read_table(path, tsv_quoting=True, fmt=fmt)
    first = pick_column(frame, path, text_col, ("sentence1", "text", "anchor", "query"), "--text-col")
    second = pick_column(frame, path, pair_col, ("sentence2", "text_pair", "positive", "document"), "--text-pair-col")
    check_texts(frame, path, first)
    check_texts(frame, path, second)
    score = score_col if score_col is not None else next((c for c in SCORE_COLUMNS if c in frame.columns), None)
    if score_col is not None and score_col not in frame.columns:
        raise DataError(f"{path}: no column {score_col!r}; columns are: {', '.join(frame.columns)}; fix: pass --label-col with one of them")
    import pandas as pd

    out = pd.DataFrame({"a": frame[first].astype(str), "b": frame[second].astype(str)})
    if score is not None:
        values = pd.to_numeric(frame[score], errors="coerce")
        bad = [i for i, v in enumerate(values.tolist()) if v != v]
        if bad:
            raise DataError(f"{path}: non-numeric or missing score in column {score!r} at row {bad[0] + 1}; fix: numeric scores only")
        out["score"] = values.astype(float)
    return out, score


STANDARD_SCALES = (1.0, 5.0, 10.0, 100.0)  # 0-1 (binary, cosine), 0-5 (STS-B, SICK), 0-10, percentages


def score_scale(path: Path, scores: list[float], declared: float | None) -> float:
    """The top of the score scale (scores run from 0 to it): ``declared`` (--score-scale) when given,
    else the smallest standard scale that holds the scores. A score outside it, not finite, below 0,
    or a handful of scores above the scale all the others fit (7.5 among STS's 0-5) is refused with
    its row: divided by a wrong top, every target would move without a word."""
    from thawkit.data.classification import describe_row

    def refuse(index: int, why: str, fix: str) -> None:
        raise DataError(f"{path}: score {scores[index]:g} at {describe_row(path, index)} {why}; fix: {fix}")

    for index, value in enumerate(scores):
        if not math.isfinite(value):
            refuse(index, "is not a finite number", "a similarity score from 0 (unrelated) up")
        if value < 0:
            refuse(index, "is below 0", "similarity scores run from 0 (unrelated) up to the scale's top (--score-scale)")
    top = max(scores)
    if top <= 0:
        raise DataError(f"{path}: every score is 0; fix: scores from 0 (unrelated) up")
    if declared is not None:
        above = [i for i, value in enumerate(scores) if value > declared]
        if above:
            refuse(above[0], f"is above the scale's top, {declared:g}", f"correct it, or a larger --score-scale ({top:g} holds all)")
        return float(declared)
    if top > STANDARD_SCALES[-1]:
        refuse(scores.index(top), f"is above {STANDARD_SCALES[-1]:g}, the largest scale thawkit infers",
               "correct it, or declare the scale with --score-scale")
    scale = next(s for s in STANDARD_SCALES if top <= s)
    lower = [s for s in STANDARD_SCALES if s < scale]
    if lower:
        above = [i for i, value in enumerate(scores) if value > lower[-1]]
        if len(above) <= max(1, len(scores) // 200):  # a typo, not a scale
            refuse(above[0], f"is above {lower[-1]:g}, the scale every other score fits",
                   f"correct it, or pass --score-scale {scale:g} if the scale really is 0-{scale:g}")
    return scale


def load_pair_data(cfg: "TrainConfig") -> PairData:
    train, score = read_pairs(Path(cfg.data), cfg.text_col, cfg.text_pair_col, cfg.label_col, cfg.table_format())
    if score is None:
        kind, max_score = "positive", 1.0
    else:
        values = set(train["score"].unique().tolist())
        if len(values) == 1:
            raise DataError(f"{cfg.data}: every score is {values.pop():g}, so there is nothing to learn or rank; "
                            "fix: include pairs of different similarity (e.g. 0 for unrelated, 5 for paraphrases)")
        kind = "binary" if values <= {0.0, 1.0} else "scored"
        max_score = score_scale(Path(cfg.data), train["score"].tolist(), cfg.score_scale)
    if cfg.validation is not None:
        validation, _ = read_pairs(Path(cfg.validation), cfg.text_col, cfg.text_pair_col, cfg.label_col, cfg.table_format())
        if "score" in validation:
            score_scale(Path(cfg.validation), validation["score"].tolist(), max_score)
        if "score" in validation and validation["score"].nunique() == 1:
            raise DataError(f"{cfg.validation}: every score is {validation['score'].iloc[0]:g}, so Spearman/Pearson are undefined; "
                            "fix: a validation set with pairs of different similarity")
        source = str(cfg.validation)
    else:
        shuffled = train.sample(frac=1.0, random_state=cfg.data_split_seed())
        cut = max(2, int(round(len(shuffled) * cfg.val_fraction)))
        validation, train = shuffled.iloc[:cut].reset_index(drop=True), shuffled.iloc[cut:].reset_index(drop=True)
        source = f"random {cfg.val_fraction:.0%} split of {cfg.data}"
    test = read_pairs(Path(cfg.test), cfg.text_col, cfg.text_pair_col, cfg.label_col, cfg.table_format())[0] if cfg.test is not None else None
    if test is not None and "score" in test and score is not None:
        score_scale(Path(cfg.test), test["score"].tolist(), max_score)
    return PairData(train, validation, test, kind, max_score, source)


__all__ = ["PairData", "SCORE_COLUMNS", "STANDARD_SCALES", "load_pair_data", "read_pairs", "score_scale"]
