"""Class-conditional systematics: lens and control must differ by the arc and nothing else.

By role (lens stamp = host + arc, control = host) and by split we summarise bad-pixel fraction
(invvar == 0 in any band or any mask bit set), the fraction of pixels per mask bit, invvar
quantiles per band (over pairs, of the per-pair median positive invvar), the band set, and the
stamp-level counts a trainer sees: NaN, inf, and pixels without data (invvar == 0) that carry
non-zero flux. Host, invvar and maskbits are shared by the two roles, so any role difference in
these counts comes from the injection (NaN arcs, arc light painted into no-data pixels, ...) and
is flagged; so is any per-sample variable (dims ``pair, role``) whose values differ by role.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..cube import SPLIT_NAMES
from .features import N_MASKBITS, PairTable

__all__ = ["ROLE_COUNTS", "systematics_by_class", "per_sample_variables"]

#: Per-sample stamp counts compared between roles (an exact equality is expected).
ROLE_COUNTS = ("nan_count", "inf_count", "nodata_flux_count")


def per_sample_variables(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Variables of the cube with dims ``(pair, role)`` (or ``(pair, role, band)``): ``name -> (n, 2, ...)``.

    Not part of the schema; a cube that carries them (exposure ids, per-stamp noise, ...) is
    audited for them, as a trainer would see them per sample. Role order follows the ``role``
    coordinate, lens first when named.
    """
    out = {}
    for name, var in ds.variables.items():
        if var.dims[:2] == ("pair", "role") and name not in ds.dims:
            vals = np.asarray(var.values)
            if "role" in ds.coords and list(ds["role"].values)[:2] == ["control", "lens"]:
                vals = vals[:, ::-1]
            out[str(name)] = vals
    return out


def _group_summary(t: PairTable, sel: np.ndarray, role: str) -> dict:
    m = t.meas
    s = t.samples[role]
    inv = m["invvar_median"][sel]
    qs = {}
    for b, band in enumerate(t.bands):
        v = inv[:, b][np.isfinite(inv[:, b])]
        qs[band] = [float(x) for x in np.quantile(v, [0.05, 0.5, 0.95])] if v.size else [None] * 3
    return {
        "n": int(sel.sum()),
        "bad_pixel_frac_mean": _mean(m["bad_pixel_frac"][sel]),
        "maskbit_frac_mean": [_mean(m["maskbit_frac"][sel, b]) for b in range(N_MASKBITS)],
        "invvar_median_q05_q50_q95": qs,
        "bands": list(t.bands),
        **{k + "_total": int(np.sum(s[k][sel])) for k in ROLE_COUNTS},
    }


def systematics_by_class(table: PairTable, ds: xr.Dataset | None = None) -> dict:
    """Summaries by role and by split x role, and the list of role differences (``flags``).

    Returns
    -------
    dict
        ``by_role`` {lens, control}, ``by_split`` {split: {lens, control}}, ``flags`` (list of
        one-line strings), ``n_flags``.
    """
    n = table.n
    allp = np.ones(n, bool)
    out = {"by_role": {r: _group_summary(table, allp, r) for r in ("lens", "control")}, "by_split": {}}
    split = table.pairs.get("split")
    if split is not None:
        for code, name in enumerate(SPLIT_NAMES):
            sel = np.asarray(split) == code
            if sel.any():
                out["by_split"][name] = {r: _group_summary(table, sel, r) for r in ("lens", "control")}
    flags = []
    for k in ROLE_COUNTS:
        a, b = table.samples["lens"][k], table.samples["control"][k]
        differ = np.asarray(a) != np.asarray(b)
        if differ.any():
            flags.append(f"{k}: lens and control stamps differ in {int(differ.sum())} of {n} pairs "
                         f"(lens total {int(np.sum(a))}, control total {int(np.sum(b))})")
    if ds is not None:
        for name, vals in per_sample_variables(ds).items():
            a, b = vals[:, 0], vals[:, 1]
            differ = ~((a == b) | (_isnan(a) & _isnan(b)))
            if differ.any():
                flags.append(f"{name}: per-sample variable differs between lens and control in "
                             f"{int(np.sum(differ.reshape(n, -1).any(axis=1)))} of {n} pairs")
    out["flags"] = flags
    out["n_flags"] = len(flags)
    return out


def _isnan(a):
    return np.isnan(a) if np.issubdtype(np.asarray(a).dtype, np.floating) else np.zeros(np.shape(a), bool)


def _mean(v):
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
