"""Core flux fraction of the injected arcs, summarised by theta_E, theta_E/PSF and src_reff bins.

``core_flux_frac`` = arc flux inside r < core radius / total arc flux, measured here from the
stored arc (after the core-mask policy), per pair and band. A large value means the injection
puts light where the host is brightest: the "bright core" shortcut.
"""

from __future__ import annotations

import numpy as np

from ..derived import core_flux_fraction
from ..statistics import REFF_EDGES, THETA_E_EDGES, THETA_E_PSF_EDGES, bin_masks

__all__ = ["core_flux_fraction", "binned_quantiles", "core_flux_summary", "THETA_E_PSF_EDGES", "REFF_EDGES"]


def binned_quantiles(values: np.ndarray, by: np.ndarray, edges) -> list[dict]:
    """Exact median, quartiles and count of ``values`` in bins of ``by`` (the one binning rule,
    :func:`lensarray.statistics.bin_index`)."""
    values = np.asarray(values, float)
    rows = []
    for lo, hi, m in bin_masks(by, list(edges)):
        v = values[m & np.isfinite(values)]
        q = np.quantile(v, [0.25, 0.5, 0.75]) if v.size else [None] * 3
        rows.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "count": int(v.size),
                "median": None if q[1] is None else float(q[1]),
                "q25": None if q[0] is None else float(q[0]),
                "q75": None if q[2] is None else float(q[2]),
                "iqr": None if q[0] is None else float(q[2] - q[0]),
            }
        )
    return rows


def core_flux_summary(
    core_flux_frac: np.ndarray,
    theta_e: np.ndarray,
    psf_fwhm: np.ndarray,
    src_reff: np.ndarray,
    bands: list[str],
    *,
    stored: np.ndarray | None = None,
    is_lens: np.ndarray | None = None,
    theta_e_edges=None,
) -> dict:
    """Per band: overall median/IQR and the binned tables by theta_E, theta_E/PSF and src_reff.

    ``theta_e_edges`` (arcsec): the theta_E bins, default :data:`lensarray.statistics.THETA_E_EDGES`
    (diagnose passes bins spanning the cube's own prior).

    Parameters
    ----------
    core_flux_frac
        ``(n, nb)`` measured fractions.
    theta_e, src_reff
        ``(n,)`` arcsec.
    psf_fwhm
        ``(n, nb)`` arcsec.
    stored
        ``(n, nb)`` fractions stored in the cube; their largest absolute difference from the
        measured ones is reported (a consistency check of the pipeline's derived quantities).
    is_lens
        Restrict to real injections (hard negatives excluded).
    """
    cff = np.asarray(core_flux_frac, float)
    sel = np.ones(cff.shape[0], bool) if is_lens is None else np.asarray(is_lens, bool)
    by_band: dict[str, dict] = {}
    out: dict[str, object] = {"bands": by_band}
    for b, band in enumerate(bands):
        v = cff[sel, b]
        fin = v[np.isfinite(v)]
        q = np.quantile(fin, [0.25, 0.5, 0.75]) if fin.size else [np.nan] * 3
        by_band[band] = {
            "count": int(fin.size),
            "median": _f(q[1]),
            "q25": _f(q[0]),
            "q75": _f(q[2]),
            "frac_gt_0p1": _f(np.mean(fin > 0.1)) if fin.size else None,
            "by_theta_e": binned_quantiles(
                v, np.asarray(theta_e)[sel], THETA_E_EDGES if theta_e_edges is None else theta_e_edges
            ),
            "by_theta_e_over_psf": binned_quantiles(
                v, (np.asarray(theta_e)[sel] / np.asarray(psf_fwhm)[sel, b]), THETA_E_PSF_EDGES
            ),
            "by_src_reff": binned_quantiles(v, np.asarray(src_reff)[sel], REFF_EDGES),
        }
    if stored is not None:
        d = np.abs(np.asarray(stored, float)[sel] - cff[sel])
        d = d[np.isfinite(d)]
        out["max_abs_diff_vs_stored"] = _f(d.max()) if d.size else None
    return out


def _f(x):
    return None if x is None or not np.isfinite(x) else float(x)
