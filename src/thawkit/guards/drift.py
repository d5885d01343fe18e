"""Drift statistics, shared by ``thawkit drift`` and the server's gauge: the population stability
index of two label distributions, and a two-sample classifier's ROC AUC (Lopez-Paz & Oquab 2017)."""

from __future__ import annotations

import numpy as np

PSI_THRESHOLD = 0.2
AUC_FLOOR, AUC_MARGIN = 0.6, 0.05
_EPS = 1e-4  # PSI of an empty bin: a share of 0 counts as 0.0001


def two_sample_auc(reference: np.ndarray, new: np.ndarray, seed: int) -> float:
    """Cross-validated ROC AUC of a logistic regression telling ``new`` rows from ``reference`` rows
    (as many of each, the larger side sampled down)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(seed)
    size = min(len(reference), len(new))
    a = reference[rng.choice(len(reference), size, replace=False)]
    b = new[rng.choice(len(new), size, replace=False)]
    features, target = np.vstack([a, b]), np.r_[np.zeros(size), np.ones(size)]
    folds = StratifiedKFold(n_splits=min(5, size), shuffle=True, random_state=seed)
    scores = cross_val_predict(LogisticRegression(max_iter=1000), features, target, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(target, scores))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins: sum (a - e) ln(a / e)."""
    e = np.clip(expected / max(expected.sum(), 1e-12), _EPS, None)
    a = np.clip(actual / max(actual.sum(), 1e-12), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


__all__ = ["AUC_FLOOR", "AUC_MARGIN", "PSI_THRESHOLD", "psi", "two_sample_auc"]
