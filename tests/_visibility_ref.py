"""Test reference for :func:`lensarray.diagnostics.visibility.visibility_proxy`: the same steps
as whole-batch numpy array operations (the implementation the numba kernel replaced)."""

from __future__ import annotations

import numpy as np

from lensarray.diagnostics.visibility import nan_quantile_rows, rings_for


def _interp(rings, profiles):
    return profiles[:, rings.lo] * (1.0 - rings.w) + profiles[:, rings.lo + 1] * rings.w


def _per_ring(rings, flat, fn, which=None):
    out = np.zeros((flat.shape[0], rings.nbin))
    for k in range(rings.nbin) if which is None else which:
        out[:, k] = fn(flat[:, rings.order[rings.bounds[k] : rings.bounds[k + 1]]])
    return out


def visibility_proxy(images, theta_e_px, fwhm_px):
    images = np.asarray(images, np.float64)
    n, size, _ = images.shape
    rings = rings_for(size)
    rad, rbin = rings.rad, rings.rbin
    flat = images.reshape(n, -1)
    theta_e_px = np.broadcast_to(np.asarray(theta_e_px, np.float64), (n,))
    fwhm_px = np.broadcast_to(np.asarray(fwhm_px, np.float64), (n,))
    half = np.where(np.isfinite(fwhm_px), np.maximum(1.0, 0.5 * fwhm_px), 1.0)
    finite = np.isfinite(flat)
    filled = np.where(finite, flat, 0.0)
    resid = flat - _interp(rings, _per_ring(rings, filled, lambda v: np.median(v, axis=1)))
    with np.errstate(invalid="ignore"):
        ann = np.abs(rad[None] - theta_e_px[:, None]) <= half[:, None]
        outer = ~ann & finite & (rad[None] > (theta_e_px + half + 2)[:, None])
    few = outer.sum(axis=1) < 10
    outer[few] = (~ann & finite)[few]
    sel = ann & finite
    centre = nan_quantile_rows(np.where(outer, resid, np.nan), 0.5)
    sigma = 1.4826 * nan_quantile_rows(np.where(outer, np.abs(resid - centre[:, None]), np.nan), 0.5)
    in_ann = np.zeros((n, rings.nbin), bool)
    for k in range(rings.nbin):
        in_ann[:, k] = ann[:, rbin == k].any(axis=1)
    needed = np.flatnonzero(in_ann.any(axis=0))
    resid_f = np.where(finite, resid, np.nan)
    q25 = _per_ring(rings, resid_f, lambda v: nan_quantile_rows(v, 0.25), needed)
    n_fin = _per_ring(rings, finite.astype(np.float64), lambda v: v.sum(axis=1), needed)
    corr = np.where(in_ann & (n_fin >= 8), q25 + 0.674 * sigma[:, None], 0.0)
    resid = resid - _interp(rings, corr)
    count = sel.sum(axis=1)
    with np.errstate(all="ignore"):
        value = np.where(sel, resid, 0.0).sum(axis=1) / (sigma * np.sqrt(count))
    ok = np.isfinite(theta_e_px) & (count > 0) & (outer.sum(axis=1) >= 10) & (sigma > 0)
    return np.where(ok, value, np.nan)
