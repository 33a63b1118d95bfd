"""Shared statistics: bin edges and the one binning rule, the pair bootstrap, percentile CIs.

Diagnose, evaluate and the accessor bin by theta_E, arc_snr, ... with :func:`bin_index` only:
bins are half-open ``[lo, hi)`` except the last, which is closed ``[lo, hi]`` (numpy.histogram's
rule), so a value equal to the last edge is counted and no two modules disagree about it.
Bootstrap CIs resample whole pairs (a lens stamp and its control together) through
:func:`pair_resample_weights`, the one draw every CI uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = [
    "THETA_E_EDGES",
    "THETA_E_PSF_EDGES",
    "REFF_EDGES",
    "PSF_EDGES",
    "theta_e_edges",
    "bin_index",
    "bin_masks",
    "pair_resample_counts",
    "pair_resample_weights",
    "percentile_ci",
    "pair_bootstrap_ci",
    "score_ranks",
    "roc_auc",
]

#: theta_E bin edges of every per-bin summary (diagnose and evaluate), arcsec.
THETA_E_EDGES = (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)
#: theta_E / PSF FWHM bin edges (core flux fraction summaries).
THETA_E_PSF_EDGES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
#: src_reff bin edges, arcsec.
REFF_EDGES = (0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0)
#: PSF FWHM bin edges (evaluation), arcsec.
PSF_EDGES = (0.8, 1.2, 1.4, 1.6, 2.6)
# arc_snr edges are the run configuration's ``brightness.snr_edges`` (one source: the config).


def theta_e_edges(lo: float, hi: float, n_bins: int = 5) -> tuple[float, ...]:
    """theta_E bin edges spanning a cube's own prior [lo, hi] (arcsec), ``n_bins`` equal bins
    (:data:`THETA_E_EDGES` when the prior is not a proper range)."""
    if not (hi > lo > 0):
        return THETA_E_EDGES
    return tuple(float(v) for v in np.round(np.linspace(lo, hi, n_bins + 1), 3))


def bin_index(values, edges: Sequence[float]) -> np.ndarray:
    """Bin of every value: ``i`` for ``edges[i] <= v < edges[i+1]``, the last bin closed; -1 outside
    the edges and for NaN. Returns int64 of the shape of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(e, v, side="right") - 1
    idx = np.where(v == e[-1], e.size - 2, idx)
    return np.where((idx >= 0) & (idx < e.size - 1) & np.isfinite(v), idx, -1).astype(np.int64)


def bin_masks(values, edges: Sequence[float]) -> Iterator[tuple[float, float, np.ndarray]]:
    """``(lo, hi, mask)`` per bin, following :func:`bin_index`."""
    idx = bin_index(values, edges)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        yield float(lo), float(hi), idx == i


def pair_resample_counts(
    groups, n_boot: int, seed: int, *, max_elements: int = 4_000_000
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Bootstrap replicates resampling whole groups (pairs) with replacement, in batches.

    Yields ``(counts, inverse)``: ``counts (batch, n_groups)`` how often each group was drawn in
    each replicate (``n_groups`` draws by ``numpy.random.default_rng(seed).integers`` per
    replicate, replicates in order), ``inverse (n_samples,)`` the group of every sample, so
    ``counts[:, inverse]`` are the replicates' weights per sample. Batches hold at most
    ``max_elements`` draws (and as many weights per sample).
    """
    uniq, inv = np.unique(np.asarray(groups), return_inverse=True)
    g_n = uniq.size
    rng = np.random.default_rng(seed)
    step = max(1, min(int(n_boot), max_elements // max(g_n, inv.size, 1)))
    for a in range(0, int(n_boot), step):
        b = min(step, int(n_boot) - a)
        # one (b, g_n) draw consumes the generator exactly as b draws of g_n in turn
        g = rng.integers(0, g_n, size=(b, g_n)) + g_n * np.arange(b)[:, None]
        yield np.bincount(g.ravel(), minlength=b * g_n).reshape(b, g_n), inv


def pair_resample_weights(groups, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap replicates resampling whole groups (pairs) with replacement, one at a time.

    Each replicate is a weight per sample: how often its group was drawn (the draws of
    :func:`pair_resample_counts`). A statistic on the weights equals the statistic on the
    expanded resample ``numpy.repeat(index, weights)``.
    """
    for counts, inv in pair_resample_counts(groups, n_boot, seed):
        yield from counts[:, inv]


def percentile_ci(values, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite ``values`` (NaN, NaN when none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    return float(np.quantile(v, a)), float(np.quantile(v, 1.0 - a))


def pair_bootstrap_ci(
    fn: Callable[..., float],
    arrays: Sequence[np.ndarray],
    groups,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of ``fn(*arrays)`` over pair resamples (each array indexed by sample)."""
    base = np.arange(len(groups))
    vals = []
    for w in pair_resample_weights(groups, n_boot, seed):
        idx = np.repeat(base, w)
        vals.append(fn(*(np.asarray(a)[idx] for a in arrays)))
    return percentile_ci(vals, level)


def score_ranks(scores) -> tuple[np.ndarray, int]:
    """Dense rank of every score (equal scores share one) and the number of distinct scores: the
    one ranking every AUC here (:func:`roc_auc`, the pair bootstrap of the core LR) is read from."""
    _, rank = np.unique(np.asarray(scores), return_inverse=True)
    rank = rank.ravel()
    return rank, (int(rank.max()) + 1 if rank.size else 0)


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 positive, 0 negative).

    The Mann-Whitney probability that a positive outscores a negative, ties counting one half:
    the number ``sklearn.metrics.roc_auc_score`` gives (its ROC trapezoids sum to the same count;
    they agree to ~1e-16), from one ranking and one cumulative count instead of its curve and
    argument checks (~6 ms a call on 20,000 scores, of which diagnose makes dozens). NaN when
    either class is empty.
    """
    y = np.asarray(labels).astype(bool).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank, n_vals = score_ranks(scores)
    neg_at = np.bincount(rank[~y], minlength=n_vals)
    below = np.cumsum(neg_at) - neg_at
    pos_rank = rank[y]
    # integer counts in float64: exact below 2^52 comparisons (~10^8 samples per class)
    return float((below[pos_rank].sum() + 0.5 * neg_at[pos_rank].sum()) / (float(n_pos) * float(n_neg)))
