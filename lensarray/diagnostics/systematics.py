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
from .features import ROLES

__all__ = ["ROLE_COUNTS", "INVVAR_QUANTILES", "class_summary", "systematics_by_class", "per_sample_variables"]

#: Per-sample stamp counts compared between roles (an exact equality is expected).
ROLE_COUNTS = ("nan_count", "inf_count", "nodata_flux_count")
#: Quantiles (over pairs) of the per-pair median positive invvar reported per class.
INVVAR_QUANTILES = (0.05, 0.5, 0.95)
#: Per-pair table variables a class summary reads.
_SUMMARY_VARS = ("invvar_median", "maskbit_frac", "bad_pixel_frac") + ROLE_COUNTS


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


def _samples(table: xr.Dataset) -> xr.Dataset:
    """The summary variables per *sample* (pair x role), with the class coordinates ``role``,
    ``split``, ``hard_negative`` and ``is_lens`` (the lens stamp of a real injection) on ``sample``."""
    cols = {}
    for k in _SUMMARY_VARS:
        v = table[k].reset_coords(drop=True)
        if "role" not in v.dims:
            v = v.expand_dims(role=list(ROLES), axis=1)
        cols[k] = v.transpose("pair", "role", ...)
    s = xr.Dataset(cols).assign_coords(role=list(ROLES))
    n = int(table.sizes["pair"])
    split = table["split"].data if "split" in table else np.full(n, -1, np.int8)
    neg = table["hard_negative"].data if "hard_negative" in table else np.zeros(n, np.int8)
    s = s.assign_coords(split=("pair", split), hard_negative=("pair", neg))
    s = s.stack(sample=("pair", "role")).reset_index("sample")
    s = s.assign_coords(is_lens=(s["role"] == ROLES[0]) & (s["hard_negative"] == 0))
    # the class labels are small per-sample vectors: held in memory, they are flox's group codes
    return s.assign_coords({k: s[k].compute() for k in ("pair", "role", "split", "hard_negative", "is_lens")})


def class_summary(table: xr.Dataset, by: tuple[str, ...] = ("role", "split")) -> xr.Dataset:
    """Systematics by class with flox: per group of samples (``by`` any of ``role``, ``split``,
    ``is_lens``, ``hard_negative``),

    - ``n``: samples;
    - ``invvar_median_quantile`` (band, quantile): quantiles 0.05 / 0.5 / 0.95 over samples of
      the per-pair median positive invvar (nanomaggy^-2), exact (``method="blockwise"`` on the
      table in one chunk);
    - ``maskbit_frac`` (bit): mean fraction of pixels with each MASKBITS bit set;
    - ``bad_pixel_frac``: mean fraction of pixels with invvar == 0 in some band or any bit set;
    - ``nan_count``, ``inf_count``, ``nodata_flux_count``: totals over the group's stamps.

    Parameters
    ----------
    table
        Per-pair table (:func:`~lensarray.diagnostics.features.pair_table`, or the lazy
        :func:`~lensarray.diagnostics.features.pair_measures` with ``split`` / ``hard_negative``).
    by
        Class keys.
    """
    from flox.xarray import xarray_reduce

    allowed = ("role", "split", "is_lens", "hard_negative")
    bad = [k for k in by if k not in allowed]
    if bad or not by:
        raise ValueError(f"by = {by!r}: allowed a non-empty tuple of {', '.join(allowed)}")
    s = _samples(table)
    groups = {"role": np.array(ROLES), "split": np.arange(len(SPLIT_NAMES), dtype=np.int64),
              "is_lens": np.array([True, False]), "hard_negative": None}
    keys = [s[k] for k in by]
    expected = tuple(groups[k] if groups[k] is not None else np.unique(np.asarray(s[k].values)) for k in by)
    s = s.chunk({"sample": -1}) if any(hasattr(v.data, "dask") for v in s.data_vars.values()) else s
    kw = dict(dim="sample", expected_groups=expected, fill_value=np.nan)
    counts = xarray_reduce(s[list(ROLE_COUNTS)], *keys, func="sum", **dict(kw, fill_value=0))
    means = xarray_reduce(s[["maskbit_frac", "bad_pixel_frac"]], *keys, func="nanmean", **kw)
    n = xarray_reduce(xr.ones_like(s["bad_pixel_frac"], dtype=np.int64).rename("n"), *keys, func="sum",
                      **dict(kw, fill_value=0))
    quant = xarray_reduce(s["invvar_median"], *keys, func="nanquantile", q=list(INVVAR_QUANTILES),
                          method="blockwise", **kw)
    out = xr.merge([n.rename("n"), means, counts, quant.rename("invvar_median_quantile")])
    if "role" in out.dims:
        out = out.sel(role=list(ROLES))
    if "split" in out.coords:
        out = out.assign_coords(split_name=("split", [SPLIT_NAMES[int(c)] for c in out["split"].values]))
    out.attrs["by"] = list(by)
    return out


def _group_dict(summ: xr.Dataset, bands: list[str]) -> dict:
    """One group of a computed :func:`class_summary` as the report's dict."""
    def f(x):
        x = float(x)
        return x if np.isfinite(x) else None

    q = summ["invvar_median_quantile"].transpose("band", "quantile").values
    return {
        "n": int(summ["n"]),
        "bad_pixel_frac_mean": f(summ["bad_pixel_frac"]),
        "maskbit_frac_mean": [f(v) for v in summ["maskbit_frac"].values],
        "invvar_median_q05_q50_q95": {b: ([f(v) for v in q[i]] if np.isfinite(q[i]).any() else [None] * 3)
                                      for i, b in enumerate(bands)},
        "bands": list(bands),
        **{k + "_total": int(summ[k]) for k in ROLE_COUNTS},
    }


def systematics_by_class(table: xr.Dataset, ds: xr.Dataset | None = None) -> dict:
    """Summaries by role and by split x role, and the list of role differences (``flags``).

    Parameters
    ----------
    table
        The computed per-pair table (:func:`~lensarray.diagnostics.features.pair_table`).
    ds
        The cube, to audit its per-sample variables (optional).

    Returns
    -------
    dict
        ``by_role`` {lens, control}, ``by_split`` {split: {lens, control}}, ``flags`` (list of
        one-line strings), ``n_flags``.
    """
    bands = [str(b) for b in table["band"].values]
    by_role = class_summary(table, ("role",)).compute()
    out = {"by_role": {r: _group_dict(by_role.sel(role=r), bands) for r in ROLES}, "by_split": {}}
    if "split" in table:
        by_split = class_summary(table, ("split", "role")).compute()
        for code, name in enumerate(SPLIT_NAMES):
            g = by_split.sel(split=code)
            if int(g["n"].sum()) > 0:
                out["by_split"][name] = {r: _group_dict(g.sel(role=r), bands) for r in ROLES}
    n = int(table.sizes["pair"])
    flags = []
    for k in ROLE_COUNTS:
        a, b = table[k].sel(role="lens").values, table[k].sel(role="control").values
        differ = a != b
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
