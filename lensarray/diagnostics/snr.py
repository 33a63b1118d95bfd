"""arc_snr distribution against the configured target (brightness.snr_edges / snr_fractions)."""

from __future__ import annotations

import numpy as np

from ..statistics import bin_index

__all__ = ["arc_snr_distribution"]


def arc_snr_distribution(
    arc_snr: np.ndarray,
    edges,
    target_fractions,
    *,
    measured: np.ndarray | None = None,
    is_lens: np.ndarray | None = None,
) -> dict:
    """Fraction of injections per configured arc_snr bin next to the target fraction.

    Parameters
    ----------
    arc_snr
        ``(n,)`` stored matched-filter S/N (dimensionless).
    edges, target_fractions
        Bin edges and target fraction per bin (the run configuration's brightness section).
    measured
        ``(n,)`` S/N re-measured from the stored arc and invvar; the largest relative difference
        from the stored value is reported.
    is_lens
        Restrict to real injections (hard negatives have their own brightness).

    Returns
    -------
    dict
        ``bins`` (list of {lo, hi, count, fraction, target, diff}), ``below`` / ``above``
        counts outside the edges, ``max_abs_fraction_diff``, ``median``, ``n``.
    """
    v = np.asarray(arc_snr, float)
    sel = np.isfinite(v) if is_lens is None else (np.isfinite(v) & np.asarray(is_lens, bool))
    v = v[sel]
    edges = [float(e) for e in edges]
    n = max(v.size, 1)
    idx = bin_index(v, edges)
    counts = np.bincount(idx[idx >= 0], minlength=len(edges) - 1)
    rows = [
        {"lo": lo, "hi": hi, "count": int(c), "fraction": float(c / n), "target": float(t), "diff": float(c / n - t)}
        for lo, hi, c, t in zip(edges[:-1], edges[1:], counts, target_fractions, strict=True)
    ]
    out = {
        "n": int(v.size),
        "bins": rows,
        "below": int(np.sum(v < edges[0])),
        "above": int(np.sum(v > edges[-1])),
        "max_abs_fraction_diff": float(max(abs(r["diff"]) for r in rows)) if rows else None,
        "median": float(np.median(v)) if v.size else None,
    }
    if measured is not None:
        m = np.asarray(measured, float)[sel]
        with np.errstate(all="ignore"):
            rel = np.abs(m - v) / np.where(v != 0, np.abs(v), np.nan)
        rel = rel[np.isfinite(rel)]
        out["max_rel_diff_vs_measured"] = float(rel.max()) if rel.size else None
    return out
