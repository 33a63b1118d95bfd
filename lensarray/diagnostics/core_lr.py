"""Core logistic-regression AUC: can the central pixels alone tell a lens from its control?

Features are the central ``core_box x core_box`` pixels of every band (300 numbers for 10x10
and g r z), standardised inside each training fold; scikit-learn ``LogisticRegression`` is
cross-validated with ``GroupKFold`` grouped by pair, so a lens and its own control are never
split between training and test folds (otherwise the model could memorise the host). The AUC
of the out-of-fold scores is reported overall and per theta_E bin, with a pair-level bootstrap
confidence interval. A cube without a core shortcut gives ~0.5; DESIGN's failure mode gives
~0.95.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..statistics import THETA_E_EDGES, bin_masks, pair_resample_weights, percentile_ci

__all__ = ["THETA_E_EDGES", "oof_scores", "bootstrap_auc", "core_lr_auc"]



def oof_scores(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, n_splits: int = 5,
               C: float = 1.0, max_iter: int = 500) -> np.ndarray:
    """Out-of-fold decision scores of a standardised logistic regression, folds grouped by ``groups``.

    Non-finite feature values are set to 0 after standardisation (a NaN must not crash the
    audit; its effect on the label is audited by the systematics checks).
    """
    X = np.asarray(features, np.float64)
    X = np.where(np.isfinite(X), X, np.nan)
    col_med = np.nanmedian(X, axis=0)
    col_med = np.where(np.isfinite(col_med), col_med, 0.0)
    X = np.where(np.isnan(X), col_med[None, :], X)
    y = np.asarray(labels).astype(int)
    n_groups = np.unique(groups).size
    k = int(min(n_splits, n_groups))
    if k < 2 or np.unique(y).size < 2:
        raise ValueError(f"core LR needs >= 2 pairs and both labels; got {n_groups} pairs, labels {np.unique(y)}")
    scores = np.empty(y.size)
    # newton-cholesky: core-box pixels are strongly correlated, lbfgs needed ~190 iterations (2 s a
    # fold at 4,000 stamps); the exact Newton step on 300 features converges in a few
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, solver="newton-cholesky"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in GroupKFold(n_splits=k).split(X, y, groups):
            if np.unique(y[train]).size < 2:
                scores[test] = 0.0
                continue
            model.fit(X[train], y[train])
            scores[test] = model.decision_function(X[test])
    # identical stamps (a null cube's lens and control) must tie exactly; BLAS can round the same
    # row differently by position (last-bit noise), which would move a null AUC off 0.5
    return np.round(scores, 9)


def bootstrap_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, *, n_boot: int = 200,
                  seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC, resampling whole pairs (groups) with replacement.

    A resample is a weight per sample (how often its group was drawn), so every replicate is
    the weighted Mann-Whitney statistic over the scores ranked once (ties count one half):
    the same numbers as ``roc_auc_score`` on the expanded resample, without building it.
    """
    y = np.asarray(labels).astype(int)
    _, score_id = np.unique(np.asarray(scores), return_inverse=True)
    n_vals = int(score_id.max()) + 1 if score_id.size else 0
    pos, neg = y == 1, y == 0
    aucs = []
    for w in pair_resample_weights(groups, n_boot, seed):
        w = w.astype(np.float64)
        w_pos, w_neg = w[pos].sum(), w[neg].sum()
        if w_pos == 0 or w_neg == 0:
            continue
        neg_at = np.bincount(score_id[neg], weights=w[neg], minlength=n_vals)
        below = np.cumsum(neg_at) - neg_at
        wins = below[score_id[pos]] + 0.5 * neg_at[score_id[pos]]
        aucs.append(float(np.dot(w[pos], wins) / (w_pos * w_neg)))
    return percentile_ci(aucs, level)


def core_lr_auc(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *,
                theta_e: np.ndarray | None = None, theta_e_edges=THETA_E_EDGES, n_splits: int = 5,
                n_boot: int = 200, seed: int = 0) -> dict:
    """Cross-validated AUC of the core LR, overall and per theta_E bin, with bootstrap CIs.

    Parameters
    ----------
    features
        ``(n_samples, n_features)`` central-box pixels (nanomaggy), one row per stamp.
    labels
        1 for a lens stamp, 0 for a control (or hard negative).
    groups
        Pair id of every sample (folds never split a pair).
    theta_e
        Einstein radius of every sample's pair, arcsec (for the per-bin AUCs).

    Returns
    -------
    dict
        ``auc``, ``ci`` ([lo, hi], 95 %), ``n_samples``, ``n_pairs``, ``by_theta_e`` (list of
        {lo, hi, n_pairs, auc, ci}); per-bin AUCs use the same out-of-fold scores.
    """
    labels = np.asarray(labels).astype(int)
    groups = np.asarray(groups)
    scores = oof_scores(features, labels, groups, n_splits=n_splits)
    out = {"auc": float(roc_auc_score(labels, scores)),
           "ci": list(bootstrap_auc(labels, scores, groups, n_boot=n_boot, seed=seed)),
           "n_samples": int(labels.size), "n_pairs": int(np.unique(groups).size), "by_theta_e": []}
    if theta_e is not None:
        for lo, hi, m in bin_masks(theta_e, list(theta_e_edges)):
            row = {"lo": lo, "hi": hi, "n_pairs": int(np.unique(groups[m]).size), "auc": None, "ci": [None, None]}
            if m.any() and np.unique(labels[m]).size == 2:
                row["auc"] = float(roc_auc_score(labels[m], scores[m]))
                row["ci"] = list(bootstrap_auc(labels[m], scores[m], groups[m], n_boot=max(50, n_boot // 2), seed=seed))
            out["by_theta_e"].append(row)
    return out
