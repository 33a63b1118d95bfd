"""Core LR AUC: can the central pixels alone tell a lens from its control?

Features are the pixels of one region of every band; the classifier is linear ("core LR"), a
ridge-regularised linear discriminant whose variance scale comes from each training fold.
Regions (:func:`region_masks`): the *disc* r < ``diagnostics.core_radius`` (the core itself, what
the gate reads by default), the published central ``core_box x core_box`` *box* (300 numbers for
10x10 and g r z; its corners reach r = 7.07 px, so after a core mask it measures arc light, not
the core), and the *ring* between them (arc light outside the core: real signal).
:func:`mask_edge_probe` asks whether lens - control light steps from ~0 to significant across one
pixel, the signature of a hard mask. The discriminant (:func:`oof_scores_by_subset`; it was a
scikit-learn ``LogisticRegression`` with 30 iterative fits per region, now closed-form from one
Gram matrix) is cross-validated with ``GroupKFold`` grouped by pair, so a lens and its own
control are never split between training and test folds (otherwise the model could memorise
the host). The AUC
of the out-of-fold scores is reported overall and per theta_E bin, with a pair-level bootstrap
confidence interval. A cube without a core shortcut gives ~0.5; DESIGN's failure mode gives
~0.95.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from ..geometry import central_slice, radius_grid
from ..statistics import (
    THETA_E_EDGES,
    bin_masks,
    pair_resample_counts,
    percentile_ci,
    roc_auc,
    score_ranks,
    theta_e_edges,
)

__all__ = [
    "THETA_E_EDGES",
    "REGIONS",
    "REGION_MEANING",
    "oof_scores",
    "oof_scores_by_subset",
    "fold_of",
    "bootstrap_auc",
    "core_lr_auc",
    "auc_summary",
    "region_masks",
    "region_columns",
    "select_region",
    "theta_e_edges",
    "edge_annuli",
    "edge_annulus_means",
    "mask_edge_probe",
    "arc_level",
]


def fold_of(labels: np.ndarray, groups: np.ndarray, n_splits: int = 5) -> tuple[np.ndarray, int]:
    """Fold of every sample and the number of folds: the groups (pairs), in a fixed seeded order,
    are dealt round-robin, so a group never spans two folds and folds differ by <= 1 group.
    Refuses (ValueError) fewer than 2 groups or a single label."""
    y = np.asarray(labels).astype(int)
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(inv.max()) + 1 if inv.size else 0
    k = int(min(n_splits, n_groups))
    if k < 2 or np.unique(y).size < 2:
        raise ValueError(f"core LR needs >= 2 pairs and both labels; got {n_groups} pairs, labels {np.unique(y)}")
    return (np.random.default_rng(0).permutation(n_groups) % k)[inv].astype(np.int64), k


def oof_scores_by_subset(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    subsets: Mapping[str, np.ndarray],
    *,
    n_splits: int = 5,
    ridge: float | None = None,
) -> dict[str, np.ndarray]:
    """Out-of-fold scores of a ridge-regularised linear discriminant, one per feature subset.

    The model is Fisher's linear discriminant on standardised features (scikit-learn's
    ``LinearDiscriminantAnalysis`` with a diagonal ridge): per training fold,
    ``w = (S_w + ridge * diag(var)) ^ -1 (m_1 - m_0)`` with ``S_w`` the pooled within-class
    covariance, ``var`` the features' variance and ``m_c`` the class means of the fold; the score
    of a test sample is the log-odds ``(x - (m_0 + m_1) / 2) . w + log(n_1 / n_0)``. It is linear,
    like the logistic regression it replaces, but closed-form: every fold and every subset comes
    from one Gram matrix (per-fold Grams summed, the test fold's subtracted), so cross-validating
    three regions costs one pass over the features instead of ~30 iterative fits.

    Parameters
    ----------
    features
        ``(n_samples, n_features)`` (any unit: the model is invariant to a per-feature affine map).
        Non-finite values are replaced by their column's median (a NaN must not crash the audit;
        its effect on the label is audited by the systematics checks).
    labels
        1 / 0 per sample.
    groups
        Pair id of every sample (folds never split a pair: :func:`fold_of`).
    subsets
        ``name -> column indices`` (or a boolean mask over the columns) of each model.
    n_splits
        Folds (fewer when there are fewer groups).
    ridge
        Diagonal ridge, in units of each feature's variance; default ``4 / n_train``: the
        curvature scikit-learn's ``LogisticRegression(C=1)`` puts on standardised features at
        the null (its Hessian is ``n / 4`` times their covariance there).

    Returns
    -------
    dict
        ``name -> (n_samples,)`` float64 scores, rounded to 1e-9 (identical stamps -- a null
        cube's lens and control -- must tie exactly; BLAS can round the same row differently
        by its position).
    """
    # one BLAS thread: diagnose runs this in the client while the workers hold every core, and
    # OpenBLAS's threads then spin against them (20 solves of <= 300 x 300 took 1-2.7 s with 2
    # threads under load, 0.013-0.018 s with one); it also makes the float32 Gram, hence the
    # scores, independent of the machine's core count
    with threadpool_limits(limits=1, user_api="blas"):
        return _oof_scores_by_subset(features, labels, groups, subsets, n_splits=n_splits, ridge=ridge)


def _oof_scores_by_subset(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    subsets: Mapping[str, np.ndarray],
    *,
    n_splits: int,
    ridge: float | None,
) -> dict[str, np.ndarray]:
    X = np.asarray(features)
    if not np.isfinite(X).all():
        X = np.where(np.isfinite(X), X, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
            col_med = np.nanmedian(X, axis=0)
        X = np.where(np.isnan(X), np.where(np.isfinite(col_med), col_med, 0.0)[None, :], X)
    y = np.asarray(labels).astype(int)
    fold, k = fold_of(y, np.asarray(groups), n_splits)
    # conditioning only (the discriminant is affine-invariant per feature): centre and scale once,
    # in row blocks (no float64 copy of the features); a float32 Gram (half the time of float64):
    # its rounding, ~1e-6 of a feature's variance, is far below the ridge (4 / n_train of it);
    # scores are evaluated in float64
    blocks = range(0, X.shape[0], 4096)
    mu = X.mean(axis=0, dtype=np.float64)
    var = sum(np.square(X[a : a + 4096] - mu).sum(axis=0) for a in blocks) / max(X.shape[0], 1)
    scale = 1.0 / np.where(var > 0, np.sqrt(var), 1.0)
    # Z holds the samples fold by fold (each fold's rows in their order), so that a fold is a
    # slice: no per-fold copies for its Gram and its test scores
    order = np.argsort(fold, kind="stable")
    bounds = np.searchsorted(fold[order], np.arange(k + 1))
    Z = np.empty(X.shape, np.float32)
    for a in blocks:
        Z[a : a + 4096] = (X[order[a : a + 4096]] - mu) * scale
    del X
    y_sorted = y[order]
    p = Z.shape[1]
    cnt = np.zeros((k, 2))
    sums = np.zeros((k, 2, p))
    gram = np.zeros((k, p, p))
    for f in range(k):
        Zf = Z[bounds[f] : bounds[f + 1]]
        gram[f] = Zf.T @ Zf
        for c in (0, 1):
            m = y_sorted[bounds[f] : bounds[f + 1]] == c
            cnt[f, c] = m.sum()
            sums[f, c] = Zf[m].sum(axis=0, dtype=np.float64)
    cols = {
        name: (np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx, np.int64))
        for name, idx in subsets.items()
    }
    out = {name: np.zeros(y.size) for name in cols}
    for f in range(k):
        n_c = cnt.sum(axis=0) - cnt[f]
        if (n_c == 0).any():  # a training fold with one class: no model, the fold scores 0
            continue
        s_c = sums.sum(axis=0) - sums[f]
        g = gram.sum(axis=0) - gram[f]
        n_t = n_c.sum()
        mean_c = s_c / n_c[:, None]
        within = (g - np.einsum("ci,cj->ij", s_c, mean_c)) / max(n_t - 2.0, 1.0)
        var = np.diag(g) / n_t - (s_c.sum(axis=0) / n_t) ** 2
        var = np.where(var > 1e-12, var, 1.0)
        lam = 4.0 / n_t if ridge is None else float(ridge)
        mid, diff = 0.5 * (mean_c[0] + mean_c[1]), mean_c[1] - mean_c[0]
        test = order[bounds[f] : bounds[f + 1]]
        Zt = Z[bounds[f] : bounds[f + 1]].astype(np.float64)  # once per fold, not per subset
        for name, j in cols.items():
            a = within[np.ix_(j, j)] + np.diag(lam * var[j])
            w = scipy.linalg.solve(a, diff[j], assume_a="pos")
            out[name][test] = (Zt[:, j] - mid[j]) @ w + np.log(n_c[1] / n_c[0])
    return {name: np.round(v, 9) for name, v in out.items()}


def oof_scores(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, n_splits: int = 5, ridge: float | None = None
) -> np.ndarray:
    """Out-of-fold scores of the core discriminant on all ``features`` (:func:`oof_scores_by_subset`)."""
    p = np.asarray(features).shape[1]
    return oof_scores_by_subset(features, labels, groups, {"all": np.arange(p)}, n_splits=n_splits, ridge=ridge)["all"]


def bootstrap_auc(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, *, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC, resampling whole pairs (groups) with replacement.

    A resample is a weight per sample (how often its group was drawn:
    :func:`lensarray.statistics.pair_resample_counts`), so every replicate is the weighted
    Mann-Whitney statistic over the scores ranked once (ties count one half): the same numbers
    as :func:`~lensarray.statistics.roc_auc` on the expanded resample, without building it (nor the per-sample
    weights: each class reads its groups' counts).
    """
    y = np.asarray(labels).astype(int)
    score_id, n_vals = score_ranks(scores)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    pos_id, neg_id = score_id[pos], score_id[neg]
    aucs = []
    for counts, inv in pair_resample_counts(groups, n_boot, seed):
        g_pos, g_neg = inv[pos], inv[neg]
        for c in counts.astype(np.float64):
            w_pos, w_neg = c[g_pos], c[g_neg]
            tot_pos, tot_neg = w_pos.sum(), w_neg.sum()
            if tot_pos == 0 or tot_neg == 0:
                continue
            neg_at = np.bincount(neg_id, weights=w_neg, minlength=n_vals)
            below = np.cumsum(neg_at) - neg_at
            aucs.append(float(np.dot(w_pos, below[pos_id] + 0.5 * neg_at[pos_id]) / (tot_pos * tot_neg)))
    return percentile_ci(aucs, level)


def core_lr_auc(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    theta_e: np.ndarray | None = None,
    theta_e_edges=THETA_E_EDGES,
    n_splits: int = 5,
    n_boot: int = 200,
    seed: int = 0,
) -> dict:
    """Cross-validated AUC of the core discriminant (:func:`oof_scores`), overall and per theta_E
    bin, with bootstrap CIs (:func:`auc_summary`).

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
    """
    scores = oof_scores(features, labels, groups, n_splits=n_splits)
    return auc_summary(labels, scores, groups, theta_e=theta_e, theta_e_edges=theta_e_edges, n_boot=n_boot, seed=seed)


def auc_summary(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    *,
    theta_e: np.ndarray | None = None,
    theta_e_edges=THETA_E_EDGES,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC of out-of-fold ``scores`` for ``labels``, overall and per theta_E bin (arcsec), with
    pair-bootstrap CIs (:func:`bootstrap_auc`; ``groups`` the pair of every sample).

    Returns
    -------
    dict
        ``auc``, ``ci`` ([lo, hi], 95 %), ``n_samples``, ``n_pairs``, ``by_theta_e`` (list of
        {lo, hi, n_pairs, auc, ci}); per-bin AUCs use the same out-of-fold scores.
    """
    labels = np.asarray(labels).astype(int)
    groups = np.asarray(groups)
    by_bin: list[dict[str, Any]] = []
    out: dict[str, Any] = {
        "auc": roc_auc(labels, scores),
        "ci": list(bootstrap_auc(labels, scores, groups, n_boot=n_boot, seed=seed)),
        "n_samples": int(labels.size),
        "n_pairs": int(np.unique(groups).size),
        "by_theta_e": by_bin,
    }
    if theta_e is not None:
        for lo, hi, m in bin_masks(theta_e, list(theta_e_edges)):
            row: dict[str, Any] = {
                "lo": lo,
                "hi": hi,
                "n_pairs": int(np.unique(groups[m]).size),
                "auc": None,
                "ci": [None, None],
            }
            if m.any() and np.unique(labels[m]).size == 2:
                row["auc"] = roc_auc(labels[m], scores[m])
                row["ci"] = list(bootstrap_auc(labels[m], scores[m], groups[m], n_boot=max(50, n_boot // 2), seed=seed))
            by_bin.append(row)
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


def region_columns(masks: Mapping[str, np.ndarray], union: np.ndarray, n_bands: int) -> dict[str, np.ndarray]:
    """Columns of each region's pixels within ``select_region(pixels, side, union)`` (band-major,
    ``n_bands`` bands): ``name -> column indices``, for :func:`oof_scores_by_subset`."""
    upix = np.flatnonzero(union.ravel())
    out = {}
    for name, m in masks.items():
        at = np.flatnonzero(np.isin(upix, np.flatnonzero(m.ravel())))
        out[name] = np.concatenate([b * upix.size + at for b in range(n_bands)])
    return out


def edge_annuli(side: int) -> int:
    """Number of 1-px annuli ``k <= r < k + 1`` wholly inside a ``side``-pixel central square
    (``k = 0 .. side // 2 - 2``): those :func:`edge_annulus_means` measures."""
    return max(int(side) // 2 - 1, 0)


def edge_annulus_means(lens: np.ndarray, control: np.ndarray, side: int) -> np.ndarray:
    """Mean band-summed lens - control light in each 1-px annulus ``k <= r < k + 1`` of the
    central squares, ``k = 0 .. side // 2 - 2`` (the annuli wholly inside the square): the
    per-pair input of :func:`mask_edge_probe`.

    Parameters
    ----------
    lens, control
        ``(n, nb * side * side)`` central squares of the lens and control stamps (nanomaggy).
    side
        Side of the squares, pixels.

    Returns
    -------
    numpy.ndarray
        ``(n, edge_annuli(side))`` float64, nanomaggy per pixel. Each row depends on its own pair
        only, so chunks of pairs give the rows of the whole exactly.
    """
    n = lens.shape[0]
    n_annuli = edge_annuli(side)
    if n_annuli == 0:
        return np.zeros((n, 0))
    lens = np.asarray(lens).reshape(n, -1, side * side)
    control = np.asarray(control).reshape(n, -1, side * side)
    # band by band, in the order numpy's sum over the band axis adds them: no (n, band, pixel)
    # float64 copies (3 x 69 MB at 10,000 pairs, whose first-touch page faults were 0.2 s)
    d = lens[:, 0].astype(np.float64) - control[:, 0]
    for b in range(1, lens.shape[1]):
        d += lens[:, b].astype(np.float64) - control[:, b]
    d = d.reshape(n, side, side)
    r = radius_grid(side)
    return np.stack([d[:, (r >= k) & (r < k + 1)].mean(axis=1) for k in range(n_annuli)], axis=1)


def mask_edge_probe(
    means: np.ndarray,
    *,
    is_lens: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    ratio_max: float = 1e-3,
    significant: float = 0.1,
) -> dict:
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
    means
        ``(n, n_annuli)`` per-pair annulus means ``m(k, k + 1)``, nanomaggy per pixel
        (:func:`edge_annulus_means`; the pixel pass measures them beside the central squares).
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
    means = np.asarray(means, np.float64)
    keep = np.ones(len(means), bool) if is_lens is None else np.asarray(is_lens, bool)
    means = means[keep]
    peak = np.abs(means).max(axis=1, initial=0.0) if reference is None else np.asarray(reference, np.float64)[keep]
    rows = []
    for R in range(1, means.shape[1]):
        inner, outer = means[:, R - 1], means[:, R]
        step = (outer >= significant * peak) & (peak > 0) & (np.abs(inner) <= ratio_max * outer)
        rows.append({"radius_px": R, "frac_sharp": float(step.mean()) if step.size else float("nan")})
    best = max(rows, key=lambda x: -1 if not np.isfinite(x["frac_sharp"]) else x["frac_sharp"]) if rows else None
    return {
        "frac_sharp": best["frac_sharp"] if best else float("nan"),
        "radius_px": best["radius_px"] if best else None,
        "by_radius": rows,
        "n_lenses": int(keep.sum()),
        "ratio_max": ratio_max,
        "significant": significant,
    }


def arc_level(arc_flux: np.ndarray, theta_e_px: np.ndarray) -> np.ndarray:
    """Mean light per pixel of an arc spread over a 2-px wide ring at theta_E (band-summed
    ``arc_flux (n, band)`` nanomaggy, ``theta_e_px (n,)``): the reference of :func:`mask_edge_probe`."""
    flux = np.nansum(np.asarray(arc_flux, np.float64).reshape(len(theta_e_px), -1), axis=1)
    return flux / (4.0 * np.pi * np.maximum(np.asarray(theta_e_px, np.float64), 1.0))
