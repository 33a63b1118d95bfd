"""Core logistic-regression AUC: can the central pixels alone tell a lens from its control?

Features are the pixels of one region of every band, standardised inside each training fold.
Regions (:func:`region_masks`): the *disc* r < ``diagnostics.core_radius`` (the core itself, what
the gate reads by default), the published central ``core_box x core_box`` *box* (300 numbers for
10x10 and g r z; its corners reach r = 7.07 px, so after a core mask it measures arc light, not
the core), and the *ring* between them (arc light outside the core: real signal).
:func:`mask_edge_probe` asks whether lens - control light steps from ~0 to significant across one
pixel, the signature of a hard mask. As before: scikit-learn ``LogisticRegression`` is
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

from ..geometry import central_slice, radius_grid
from ..statistics import THETA_E_EDGES, bin_masks, pair_resample_weights, percentile_ci, theta_e_edges

__all__ = ["THETA_E_EDGES", "REGIONS", "REGION_MEANING", "oof_scores", "bootstrap_auc", "core_lr_auc",
           "region_masks", "select_region", "theta_e_edges", "mask_edge_probe", "arc_level"]



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


# --------------------------------------------------------------------------------------
# regions of the central pixels: disc, published box, ring between them; the mask-edge probe
# --------------------------------------------------------------------------------------
#: Pixel sets the core LR can read (``diagnostics.core_lr_region``).
REGIONS = ("disc", "box", "ring")

#: What each region measures, in words (the report prints these).
REGION_MEANING = {
    "disc": "pixels with r < core radius: the core itself (what a 'bright core' shortcut uses)",
    "box": "the central core_box x core_box square of published core-LR numbers; its corners reach "
           "r = box/sqrt(2), so it also sees arc light outside the core (for small theta_E the arc itself)",
    "ring": "the box minus the disc: arc light near but outside the core (real signal, not a shortcut)",
}


def region_masks(side: int, core_radius: float, box: int) -> dict[str, np.ndarray]:
    """Boolean ``(side, side)`` masks of :data:`REGIONS` over a central square.

    ``disc``: r < ``core_radius``; ``box``: the published ``box x box`` square (offsets
    -box//2 .. box - box//2 - 1, as the 10x10 box of the original diagnostic); ``ring``: box
    and not disc. Distances are from the stamp origin (centre of pixel size//2).
    """
    if side < box:
        raise ValueError(f"side = {side}: allowed a side >= box ({box})")
    r = radius_grid(side)  # a central square's own centre pixel side//2 is the stamp origin
    in_box = np.zeros((side, side), bool)
    sl = central_slice(side, box)
    in_box[sl, sl] = True
    disc = r < core_radius
    return {"disc": disc, "box": in_box, "ring": in_box & ~disc}


def select_region(pixels: np.ndarray, side: int, mask: np.ndarray) -> np.ndarray:
    """Columns of ``pixels (n, nb * side * side)`` (band-major central squares) inside ``mask``."""
    n = pixels.shape[0]
    sq = pixels.reshape(n, -1, side, side)
    return sq[:, :, mask].reshape(n, -1)


def mask_edge_probe(lens: np.ndarray, control: np.ndarray, side: int, *, is_lens: np.ndarray | None = None,
                    reference: np.ndarray | None = None, ratio_max: float = 1e-3, significant: float = 0.1) -> dict:
    """Does the light lens - control step from ~0 to significant across one pixel, at any radius?

    A hard core mask does exactly that at its radius (zero inside, the arc outside); light that
    went through a seeing PSF cannot: a Gaussian of sigma >= 1.5 px falls by a factor
    exp(-(2x + 1) / (2 sigma^2)) per pixel at x pixels from its peak, > 1e-3 for the 10 px
    around any arc. Per lens pair and radius R (pixels), with ``m(a, b)`` the mean band-summed
    lens - control light in ``a <= r < b``: a *step at R* is ``m(R, R+1) >= significant * peak``
    and ``|m(R-1, R)| <= ratio_max * m(R, R+1)``, ``peak`` the pair's ``reference`` level (default:
    its largest 1-px annulus mean inside the square). A taper of width ~1 px (ratio ~0.3 per
    pixel) is not a step. Far PSF tails (a 1e-8 fraction of an arc) round to exactly zero in
    float32 next to the host, so ``reference`` should be the arc's own level, e.g. its flux
    spread over a 2-px wide ring at theta_E: :func:`arc_level`.

    Parameters
    ----------
    lens, control
        ``(n, nb * side * side)`` central squares of the lens and control stamps (nanomaggy).
    side
        Side of the squares, pixels.
    is_lens
        ``(n,)`` pairs whose lens stamp is a real injection (default all).
    reference
        ``(n,)`` level ``peak`` of each pair's light (band-summed nanomaggy per pixel).
    ratio_max, significant
        Thresholds above (dimensionless).

    Returns
    -------
    dict
        ``frac_sharp`` (largest fraction of lens pairs with a step at one radius), ``radius_px``
        (that radius), ``by_radius`` (list of {radius_px, frac_sharp}), ``n_lenses``.
    """
    n = lens.shape[0]
    d = (np.asarray(lens, np.float64) - np.asarray(control, np.float64)).reshape(n, -1, side, side).sum(axis=1)
    keep = np.ones(n, bool) if is_lens is None else np.asarray(is_lens, bool)
    d = d[keep]
    r = radius_grid(side)
    r_top = side // 2 - 1  # annuli wholly inside the square
    means = np.stack([d[:, (r >= k) & (r < k + 1)].mean(axis=1) for k in range(r_top)], axis=1)
    peak = np.abs(means).max(axis=1, initial=0.0) if reference is None else np.asarray(reference, np.float64)[keep]
    rows = []
    for R in range(1, r_top):
        inner, outer = means[:, R - 1], means[:, R]
        step = (outer >= significant * peak) & (peak > 0) & (np.abs(inner) <= ratio_max * outer)
        rows.append({"radius_px": R, "frac_sharp": float(step.mean()) if step.size else float("nan")})
    best = max(rows, key=lambda x: -1 if not np.isfinite(x["frac_sharp"]) else x["frac_sharp"]) if rows else None
    return {"frac_sharp": best["frac_sharp"] if best else float("nan"),
            "radius_px": best["radius_px"] if best else None, "by_radius": rows, "n_lenses": int(keep.sum()),
            "ratio_max": ratio_max, "significant": significant}


def arc_level(arc_flux: np.ndarray, theta_e_px: np.ndarray) -> np.ndarray:
    """Mean light per pixel of an arc spread over a 2-px wide ring at theta_E (band-summed
    ``arc_flux (n, band)`` nanomaggy, ``theta_e_px (n,)``): the reference of :func:`mask_edge_probe`."""
    flux = np.nansum(np.asarray(arc_flux, np.float64).reshape(len(theta_e_px), -1), axis=1)
    return flux / (4.0 * np.pi * np.maximum(np.asarray(theta_e_px, np.float64), 1.0))
