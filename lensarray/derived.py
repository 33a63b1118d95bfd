"""Per-pair statistics derived from the stored arc (after the core-mask policy)."""

from __future__ import annotations

import numpy as np

from .masking import radius_map

__all__ = ["arc_statistics", "matched_filter_snr"]


def matched_filter_snr(arcs: np.ndarray, invvar: np.ndarray) -> np.ndarray:
    """``sqrt(sum(arc^2 * invvar))`` over the last two axes (pixels with invvar 0 add nothing)."""
    a = np.asarray(arcs, dtype=np.float64)
    return np.sqrt(np.sum(a * a * np.asarray(invvar, dtype=np.float64), axis=(-2, -1)))


def arc_statistics(arcs: np.ndarray, invvar: np.ndarray, *, core_radius: float, snr_band_index: int) -> dict:
    """Flux, S/N and core flux fraction of arcs.

    Parameters
    ----------
    arcs, invvar
        ``(n, band, size, size)``: arc (nanomaggy) and inverse variance (nanomaggy^-2).
    core_radius
        Core radius, pixels (``r < core_radius`` from the stamp origin).
    snr_band_index
        Band whose matched-filter S/N is ``arc_snr``.

    Returns
    -------
    dict
        ``arc_flux`` (n, band) nanomaggy, ``arc_snr`` (n,), ``core_flux_frac`` (n, band): flux in
        the core / total flux (NaN where the total is 0, e.g. null cubes).
    """
    a = np.asarray(arcs, dtype=np.float64)
    total = a.sum(axis=(-2, -1))
    core = a[..., radius_map(a.shape[-1]) < core_radius].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total != 0, core / np.where(total != 0, total, 1.0), np.nan)
    snr = matched_filter_snr(a[:, snr_band_index], np.asarray(invvar)[:, snr_band_index])
    return {"arc_flux": total.astype(np.float32), "arc_snr": snr.astype(np.float32),
            "core_flux_frac": frac.astype(np.float32)}
