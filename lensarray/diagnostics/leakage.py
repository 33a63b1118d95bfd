"""Metadata leakage audit: could a trainer predict the label from anything but the arc?

The label is per *sample* (``is_lens``: the lens-role stamp of a real injection), so a per-pair
variable shared by lens and control has AUC 0.5 by construction -- unless some pairs are hard
negatives, whose two stamps are both labelled 0: then any host fact that differs between
negative and lens pairs (depth, PSF, sky position, masking, pair ordering) is a leak. We audit,
per sample, the AUC of each of these alone for the label (symmetrised: max(AUC, 1 - AUC)):

- host facts a trainer could see: ``pair``, ``ra``, ``dec``, ``brickname``, ``region``,
  ``split``, ``psf_fwhm``, ``psfdepth``, ``host_mag``, ``host_reff``, ``host_id`` (per band
  where banded);
- per-pair pixel statistics measured from the cube: invvar sum, median and zero fraction per
  band, mask-bit pixel fraction, bad-pixel fraction;
- per-sample stamp statistics: NaN, inf and no-data-with-flux pixel counts;
- any per-sample variable of the cube (dims ``pair, role``).

Injection truth (theta_E, source parameters, arc_snr, ...) is not trainer input and is left
out, as is ``hard_negative`` (the label itself). Stamp flux statistics (flux outside the core,
core mean, visibility) legitimately carry the arc: they are reported as ``signal`` without a
gate. NaN is audited as a value of its own (a NaN pattern is a leak too).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..statistics import roc_auc
from .features import ROLES
from .systematics import per_sample_variables

__all__ = ["HOST_FACTS", "feature_auc", "metadata_leakage"]

HOST_FACTS = (
    "pair",
    "ra",
    "dec",
    "brickname",
    "region",
    "split",
    "psf_fwhm",
    "psfdepth",
    "host_mag",
    "host_reff",
    "host_id",
)


def feature_auc(values: np.ndarray, labels: np.ndarray) -> float:
    """AUC of one feature for a binary label; NaNs rank below every number; strings are factorised."""
    v = np.asarray(values)
    if v.dtype.kind in "USO":
        _, v = np.unique(v.astype(str), return_inverse=True)
    v = v.astype(float)
    nan = ~np.isfinite(v)
    if nan.any():
        fin = v[~nan]
        v = np.where(nan, (fin.min() - 1.0) if fin.size else 0.0, v)
    y = np.asarray(labels).astype(int)
    if np.unique(y).size < 2:
        return float("nan")
    return roc_auc(y, v)


def _columns(name: str, arr: np.ndarray, bands: list[str]):
    arr = np.asarray(arr)
    if arr.ndim == 1:
        yield name, arr
    elif arr.ndim == 2 and arr.shape[1] == len(bands):
        for b, band in enumerate(bands):
            yield f"{name}[{band}]", arr[:, b]
    else:
        for j in range(arr.reshape(arr.shape[0], -1).shape[1]):
            yield f"{name}[{j}]", arr.reshape(arr.shape[0], -1)[:, j]


def metadata_leakage(table: xr.Dataset, ds: xr.Dataset | None = None, *, threshold: float = 0.55) -> dict:
    """Per-sample AUC of every audited variable for the ``is_lens`` label.

    Parameters
    ----------
    table
        The per-pair table of the cube.
    ds
        The cube, to audit its per-sample variables (optional).
    threshold
        Flag a variable when max(AUC, 1 - AUC) exceeds this.

    Returns
    -------
    dict
        ``audited`` (list of {name, kind, auc, auc_sym, flagged}), ``signal`` (the same for
        stamp flux statistics, never flagged), ``max_auc_sym``, ``worst`` and ``flagged`` names.
    """
    n = int(table.sizes["pair"])
    bands = [str(b) for b in table["band"].values]
    lab_pair = np.asarray(table["is_lens"].values, bool)
    labels = np.concatenate([lab_pair, np.zeros(n, bool)])  # rows: all lens-role samples, then controls

    def roles(name):
        v = table[name].transpose("role", "pair", ...)
        return np.concatenate([v.sel(role=ROLES[0]).values, v.sel(role=ROLES[1]).values])

    def both(v):
        return np.concatenate([v, v])

    cols: list[tuple[str, str, np.ndarray]] = []
    for name in HOST_FACTS:
        if name in table.variables:
            for cname, v in _columns(name, table[name].values, bands):
                cols.append((cname, "host fact", both(v)))
    for name in ("invvar_sum", "invvar_median", "invvar_zero_frac", "bad_pixel_frac"):
        for cname, v in _columns(name, table[name].values, bands):
            cols.append((cname, "pixel statistic", both(v)))
    cols.append(
        ("maskbit_any_frac", "pixel statistic", both(table["maskbit_frac"].values.astype(np.float64).sum(axis=1)))
    )
    for name in ("nan_count", "inf_count", "nodata_flux_count"):
        cols.append((name, "stamp statistic", roles(name)))
    if ds is not None:
        for name, vals in per_sample_variables(ds).items():
            for cname, v in _columns(name, np.concatenate([vals[:, 0], vals[:, 1]]), bands):
                cols.append((cname, "per-sample variable", v))
    audited = []
    for cname, kind, v in cols:
        auc = feature_auc(v, labels)
        sym = max(auc, 1 - auc) if np.isfinite(auc) else float("nan")
        audited.append(
            {
                "name": cname,
                "kind": kind,
                "auc": _r(auc),
                "auc_sym": _r(sym),
                "flagged": bool(np.isfinite(sym) and sym > threshold),
            }
        )
    signal = []
    measured = (
        np.asarray(table["visibility_measured"].values, bool)
        if "visibility_measured" in table.coords
        else np.ones(n, bool)
    )
    for name in ("flux_outside_core", "core_mean", "central_brightness", "visibility"):
        v = roles(name)
        # the visibility proxy is measured on a subsample: its AUC on those samples only
        keep = np.concatenate([measured, measured]) if name == "visibility" else slice(None)
        for cname, col in _columns(name, v[keep], bands):
            auc = feature_auc(col, labels[keep])
            signal.append({"name": cname, "auc": _r(auc)})
    syms = [a["auc_sym"] for a in audited if a["auc_sym"] is not None]
    worst = max(audited, key=lambda a: -1 if a["auc_sym"] is None else a["auc_sym"]) if audited else None
    return {
        "threshold": threshold,
        "audited": audited,
        "signal": signal,
        "max_auc_sym": max(syms) if syms else None,
        "worst": worst["name"] if worst else None,
        "flagged": [a["name"] for a in audited if a["flagged"]],
    }


def _r(x):
    return None if x is None or not np.isfinite(x) else round(float(x), 6)
