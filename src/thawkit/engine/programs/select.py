"""``thawkit select``: which unlabeled texts to label next.

Texts are embedded (L2-normalised sentence embeddings: a classification run's own body when it has
one, else the encoder ``--model``, by default the run's base or the embedded MiniLM-L6) and chosen
by k-means++ seeding (Arthur & Vassilvitskii 2007): each next text is drawn with probability
proportional to its squared distance to the nearest text already labeled or chosen, so the picks
spread over the pool's clusters and a labeled set is extended where it covers least. With a
classification run, each text's draw weight is also multiplied by the run's uncertainty on it
(1 - the margin between its two most probable labels; multi-label: the mean over labels of
1 - |2p - 1|), uncertainty x diversity as in BADGE (Ash et al. 2020), without the gradient
embeddings. Draws are seeded: the same pool, labeled set, run and seed give the same picks.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thawkit.errors import ConfigError, DataError

log = logging.getLogger("thawkit")


@dataclass
class Selection:
    texts: list[str]  # in the order drawn
    uncertainty: list[float] | None  # the run's, per chosen text
    predicted: list[str] | None  # the run's most probable label, per chosen text
    method: str
    pool_size: int  # distinct texts in the pool
    excluded: int  # pool texts already in --from-labeled
    labeled: int  # texts of --from-labeled (the starting centres)
    embedder: str
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kmeans_pp(embeddings: np.ndarray, budget: int, seed: int, weights: np.ndarray | None = None,
              centres: np.ndarray | None = None) -> list[int]:
    """``budget`` row indices by k-means++ seeding: each draw proportional to weight x squared distance
    to the nearest centre so far (``centres``: points already labeled; none: the first draw is weighted
    only). Rows of ``embeddings`` are L2-normalised."""
    rng = np.random.default_rng(seed)
    n = len(embeddings)
    weights = np.ones(n) if weights is None else np.clip(weights, 1e-6, None)
    nearest = np.full(n, np.inf)
    if centres is not None and len(centres):
        for start in range(0, len(centres), 1024):  # (n, hidden) x (hidden, chunk): cosine distance 2 - 2 sim
            nearest = np.minimum(nearest, (2.0 - 2.0 * embeddings @ centres[start : start + 1024].T).min(axis=1))
    chosen: list[int] = []
    for _ in range(min(budget, n)):
        score = weights * (np.clip(nearest, 0.0, None) if np.isfinite(nearest).any() else np.ones(n))
        if chosen:
            score[chosen] = 0.0
        if score.sum() <= 0:  # every remaining text duplicates a centre: fall back to the weights
            score = weights.copy()
            score[chosen] = 0.0
        pick = int(rng.choice(n, p=score / score.sum()))
        chosen.append(pick)
        nearest = np.minimum(nearest, 2.0 - 2.0 * embeddings @ embeddings[pick])
    return chosen


def uncertainty_of(probabilities: np.ndarray, multi_label: bool) -> np.ndarray:
    """(n, labels) probabilities -> (n,) in [0, 1]: 1 - margin of the top two; multi-label: mean of 1 - |2p - 1|."""
    if multi_label:
        return (1.0 - np.abs(2.0 * probabilities - 1.0)).mean(axis=1)
    top = np.sort(probabilities, axis=1)
    return 1.0 - (top[:, -1] - top[:, -2])


def select_examples(pool: Path, budget: int, run: Path | None = None, labeled: Path | None = None, model: str | None = None,
                    text_col: str | None = None, seed: int = 42, max_length: int = 128, batch_size: int = 64) -> Selection:
    """The ``budget`` pool texts to label next (see the module docstring)."""
    from thawkit.data.texts import read_texts

    if budget < 1:
        raise ConfigError(f"--budget {budget}: select at least one text; fix: e.g. --budget 16")
    texts = list(dict.fromkeys(read_texts(pool, text_col, flag="--pool")))  # distinct, in file order
    done = list(dict.fromkeys(read_texts(labeled, text_col, flag="--from-labeled"))) if labeled is not None else []
    known = set(done)
    candidates = [t for t in texts if t not in known]
    if not candidates:
        raise DataError(f"{pool}: every text is already in {labeled}; fix: a pool with texts not yet labeled")
    loaded = _load_run(run) if run is not None else None
    from thawkit.models.pooled import sentence_embedder

    embed, embedder = sentence_embedder(loaded, model, max_length, batch_size)
    vectors = embed(candidates)
    centres = embed(done) if done else None
    weights = predicted = None
    if loaded is not None:
        probabilities = loaded.probabilities(candidates)
        weights = uncertainty_of(probabilities, loaded.multi_label)
        predicted = [loaded.labels[int(i)] for i in probabilities.argmax(axis=1)]
    picks = kmeans_pp(vectors, budget, seed, weights, centres)
    if budget > len(candidates):
        log.warning("Hint: --budget %d but the pool has %d texts not yet labeled; all of them are selected", budget, len(candidates))
    method = ("uncertainty x diversity (k-means++ weighted by the run's margin)" if loaded is not None
              else "diversity (k-means++ on sentence embeddings)")
    return Selection(
        texts=[candidates[i] for i in picks],
        uncertainty=[round(float(weights[i]), 6) for i in picks] if weights is not None else None,
        predicted=[predicted[i] for i in picks] if predicted is not None else None,
        method=method, pool_size=len(texts), excluded=len(texts) - len(candidates), labeled=len(done), embedder=embedder, seed=seed,
    )


def write_selection(selection: Selection, out: Path) -> None:
    """A CSV ready to label: ``text`` and an empty ``label`` column (plus the run's ``predicted`` label
    and ``uncertainty`` when a run chose them), written under a temporary name and renamed."""
    import pandas as pd

    columns: dict[str, Any] = {"text": selection.texts, "label": [""] * len(selection.texts)}
    if selection.predicted is not None:
        columns.update(predicted=selection.predicted, uncertainty=selection.uncertainty)
    temporary = out.parent / f".{out.name}.tmp"
    try:
        pd.DataFrame(columns).to_csv(temporary, index=False)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)


def _load_run(run: Path) -> Any:
    from thawkit.logging_setup import quiet_libraries
    from thawkit.tasks import load_checked, open_run

    task, folder, info, labels = open_run(run)
    quiet_libraries()
    loaded = load_checked(task, folder, info, labels)
    if not callable(getattr(loaded, "probabilities", None)):
        raise ConfigError(f"--run {run}: a {info.get('task')} run gives no label probabilities to be uncertain about; "
                          "fix: pass a classification run, or no --run (diversity alone)")
    return loaded
