"""``thawkit drift RUN --data new.csv``: has the data the model now sees moved away from what it was
trained on?

Two measurements, each with a threshold and a reference the run itself provides:

- Input drift: a classifier two-sample test (Lopez-Paz & Oquab 2017) on sentence embeddings (the
  run's own body where it has one, else its base encoder, as ``thawkit select`` embeds): a
  scikit-learn logistic regression tells training texts from new texts, and its cross-validated
  ROC AUC is the statistic (0.5: indistinguishable). The reference is the same test between the
  run's training texts and its own validation split (drawn from the same data, so only sampling
  noise); drift is an AUC of at least max(0.6, reference + 0.05).
- Prediction drift (classification): the population stability index (PSI) between the run's
  predicted labels on its validation split (data like its training data; the training texts when
  there is none) and on the new texts; PSI >= 0.2 is the usual "significant shift" line (< 0.1
  none, 0.1-0.2 moderate). The training labels' own distribution is reported beside them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thawkit.errors import ConfigError
from thawkit.guards.drift import AUC_FLOOR, AUC_MARGIN, PSI_THRESHOLD, psi, two_sample_auc

@dataclass
class DriftReport:
    verdict: str
    drifted: bool
    inputs: dict[str, Any]
    predictions: dict[str, Any] | None
    new_examples: int
    reference_examples: int
    embedder: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label_shares(run: Any, texts: list[str]) -> np.ndarray:
    probabilities = run.probabilities(texts)
    if run.multi_label:
        return (probabilities >= 0.5).sum(axis=0).astype(float)
    return np.bincount(probabilities.argmax(axis=1), minlength=len(run.labels)).astype(float)


def measure_drift(run_path: Path, data: Path, text_col: str | None = None, reference: Path | None = None,
                  sample: int = 2000, seed: int = 42) -> DriftReport:
    """Input and prediction drift of ``data``'s texts against the run's training data (``reference``:
    another file of training-like texts, when the run's own data is not readable here)."""
    from thawkit.data.texts import read_texts
    from thawkit.models.pooled import sentence_embedder
    from thawkit.logging_setup import quiet_libraries
    from thawkit.tasks import load_checked, open_run

    task, folder, info, labels = open_run(run_path)
    quiet_libraries()
    run = load_checked(task, folder, info, labels)
    new = list(dict.fromkeys(read_texts(data, text_col, flag="--data")))
    if len(new) < 10:
        raise ConfigError(f"{data}: {len(new)} distinct texts; drift needs at least 10 to compare; fix: pass more texts")
    train_texts, train_labels, validation_texts = _training_texts(run, reference, text_col)
    rng = np.random.default_rng(seed)

    def sampled(texts: list[str]) -> list[str]:
        return [texts[i] for i in sorted(rng.choice(len(texts), min(sample, len(texts)), replace=False))]

    new, train_sample = sampled(new), sampled(train_texts)
    embed, embedder = sentence_embedder(run, None, run.max_length, 64)
    train_vectors = embed(train_sample)
    auc = two_sample_auc(train_vectors, embed(new), seed)
    baseline = two_sample_auc(train_vectors, embed(sampled(validation_texts)), seed) if len(validation_texts) >= 10 else None
    threshold = max(AUC_FLOOR, (baseline or 0.0) + AUC_MARGIN)
    inputs = {"statistic": "two-sample classifier ROC AUC on sentence embeddings (0.5: indistinguishable)", "auc": round(auc, 4),
              "reference_auc": round(baseline, 4) if baseline is not None else None, "threshold": round(threshold, 4),
              "drift": auc >= threshold}
    predictions = None
    if callable(getattr(run, "probabilities", None)):
        # Against the run's own predictions on data like its training data (its validation split, else
        # the training texts): a shift in what it predicts, not how its predictions differ from the gold labels.
        baseline_texts = validation_texts if len(validation_texts) >= 10 else train_sample
        expected, shares_new = _label_shares(run, baseline_texts), _label_shares(run, new)
        value = psi(expected, shares_new)
        predictions = {"statistic": "PSI of the predicted labels on the new texts against those on "
                                    + ("the run's validation split" if baseline_texts is validation_texts else "the training texts"),
                       "psi": round(value, 4), "threshold": PSI_THRESHOLD, "drift": value >= PSI_THRESHOLD,
                       "reference": dict(zip(run.labels, (expected / max(expected.sum(), 1)).round(4).tolist())),
                       "predicted": dict(zip(run.labels, (shares_new / max(shares_new.sum(), 1)).round(4).tolist())),
                       **({"training_labels": dict(zip(run.labels, (train_labels / train_labels.sum()).round(4).tolist()))}
                          if train_labels is not None and train_labels.sum() else {})}
    drifted = bool(inputs["drift"] or (predictions or {}).get("drift"))
    parts = [f"inputs {'DRIFTED' if inputs['drift'] else 'steady'} (AUC {auc:.3f}, threshold {threshold:.3f})"]
    if predictions is not None:
        parts.append(f"predicted labels {'SHIFTED' if predictions['drift'] else 'steady'} (PSI {predictions['psi']:.3f}, "
                     f"threshold {PSI_THRESHOLD})")
    verdict = ("drift: " if drifted else "no drift: ") + "; ".join(parts)
    return DriftReport(verdict, drifted, inputs, predictions, len(new), len(train_sample), embedder)


def _training_texts(run: Any, reference: Path | None, text_col: str | None) -> tuple[list[str], np.ndarray | None, list[str]]:
    """(training texts, training label counts or None, validation texts) of the run: rebuilt from its
    config (the same files and seeded split), or ``reference``'s texts (no labels, no validation)."""
    from thawkit.config import make_config
    from thawkit.data.texts import read_texts
    from thawkit.errors import ThawkitError
    from thawkit.tasks import task_for_run

    if reference is not None:
        return list(dict.fromkeys(read_texts(reference, text_col, flag="--reference"))), None, []
    config = run.info.get("config", {})
    try:
        task = task_for_run(run.info["task"])
        loaded = task.load_data(make_config(config))
    except (ThawkitError, OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"the run's training data {config.get('data')!r} is not readable here ({' '.join(str(exc).split())[:200]}); "
                          "fix: pass --reference FILE with texts like the training data") from None
    inputs = task.advice_input(loaded)
    counts = task.class_counts(loaded)
    names = getattr(run, "labels", None)
    labels = np.array([counts.get(name, 0) for name in names], dtype=float) if counts and names else None
    return inputs.texts, labels, list(inputs.validation_texts)


__all__ = ["DriftReport", "measure_drift"]
