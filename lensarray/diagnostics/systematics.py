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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..cube import SPLIT_NAMES
from .features import ROLES

__all__ = [
    "ROLE_COUNTS",
    "INVVAR_QUANTILES",
    "ClassSystematics",
    "GroupSystematics",
    "class_summary",
    "systematics_by_class",
    "per_sample_variables",
]

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
    out: dict[str, np.ndarray] = {}
    for name, var in ds.variables.items():
        if var.dims[:2] == ("pair", "role") and name not in ds.dims:
            vals = np.asarray(var.values)
            if "role" in ds.coords and list(ds["role"].values)[:2] == ["control", "lens"]:
                vals = vals[:, ::-1]
            out[str(name)] = vals
    return out


def _samples(table: xr.Dataset) -> xr.Dataset:
    """The summary variables per *sample* (pair x role), with the class coordinates ``role`` (its
    index in :data:`ROLES`), ``split``, ``hard_negative`` and ``is_lens`` (the lens stamp of a real injection) on ``sample``."""
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
    # the role as its index in ROLES: flox factorises a string key through pandas' string arrays
    # (~1 s of searchsorted / isin per summary at 200k pairs); the caller names the groups back
    s = s.assign_coords(role=("sample", np.tile(np.arange(len(ROLES), dtype=np.int8), n)))
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
    groups = {
        "role": np.arange(len(ROLES), dtype=np.int8),
        "split": np.arange(len(SPLIT_NAMES), dtype=np.int64),
        "is_lens": np.array([True, False]),
        "hard_negative": None,
    }
    keys = [s[k] for k in by]
    expected = tuple(groups[k] if groups[k] is not None else np.unique(np.asarray(s[k].values)) for k in by)
    s = s.chunk({"sample": -1}) if any(hasattr(v.data, "dask") for v in s.data_vars.values()) else s
    counts = xarray_reduce(
        s[list(ROLE_COUNTS)], *keys, func="sum", dim="sample", expected_groups=expected, fill_value=0
    )
    means = xarray_reduce(
        s[["maskbit_frac", "bad_pixel_frac"]],
        *keys,
        func="nanmean",
        dim="sample",
        expected_groups=expected,
        fill_value=np.nan,
    )
    n = xarray_reduce(
        xr.ones_like(s["bad_pixel_frac"], dtype=np.int64).rename("n"),
        *keys,
        func="sum",
        dim="sample",
        expected_groups=expected,
        fill_value=0,
    )
    quant = xarray_reduce(
        s["invvar_median"],
        *keys,
        func="nanquantile",
        q=list(INVVAR_QUANTILES),
        method="blockwise",
        dim="sample",
        expected_groups=expected,
        fill_value=np.nan,
    )
    out = xr.merge([n.rename("n"), means, counts, quant.rename("invvar_median_quantile")])
    if "role" in out.dims:
        out = out.assign_coords(role=np.array(ROLES)[out["role"].values.astype(int)])
    if "split" in out.coords:
        out = out.assign_coords(split_name=("split", [SPLIT_NAMES[int(c)] for c in out["split"].values]))
    out.attrs["by"] = list(by)
    return out


def _finite_or_none(x: xr.DataArray | np.floating | float) -> float | None:
    """A float for the JSON report: NaN / inf (an empty group) become ``None``."""
    v = float(x)
    return v if np.isfinite(v) else None


@dataclass(frozen=True)
class GroupSystematics:
    """Systematics of one class of stamps (one role, or one role within a split).

    Attributes
    ----------
    n
        Stamps in the class.
    bad_pixel_frac_mean
        Mean fraction of pixels with invvar == 0 in some band or any mask bit set (``None``: no stamps).
    maskbit_frac_mean
        Mean fraction of pixels with each MASKBITS bit set, one entry per bit.
    invvar_median_q05_q50_q95
        Per band: quantiles 0.05 / 0.5 / 0.95 over pairs of the per-pair median positive invvar
        (nanomaggy^-2).
    bands
        Band names, in cube order.
    role_count_totals
        ``nan_count`` / ``inf_count`` / ``nodata_flux_count`` totals over the class's stamps (pixels).
    """

    n: int
    bad_pixel_frac_mean: float | None
    maskbit_frac_mean: list[float | None]
    invvar_median_q05_q50_q95: dict[str, list[float | None]]
    bands: list[str]
    role_count_totals: dict[str, int]

    @classmethod
    def from_summary(cls, summ: xr.Dataset, bands: list[str]) -> GroupSystematics:
        """One group of a computed :func:`class_summary`."""
        q = summ["invvar_median_quantile"].transpose("band", "quantile").values
        return cls(
            n=int(summ["n"]),
            bad_pixel_frac_mean=_finite_or_none(summ["bad_pixel_frac"]),
            maskbit_frac_mean=[_finite_or_none(v) for v in summ["maskbit_frac"].values],
            invvar_median_q05_q50_q95={
                b: ([_finite_or_none(v) for v in q[i]] if np.isfinite(q[i]).any() else [None] * len(INVVAR_QUANTILES))
                for i, b in enumerate(bands)
            },
            bands=list(bands),
            role_count_totals={k: int(summ[k]) for k in ROLE_COUNTS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON form (role counts as ``<name>_total`` keys)."""
        return {
            "n": self.n,
            "bad_pixel_frac_mean": self.bad_pixel_frac_mean,
            "maskbit_frac_mean": list(self.maskbit_frac_mean),
            "invvar_median_q05_q50_q95": {b: list(v) for b, v in self.invvar_median_q05_q50_q95.items()},
            "bands": list(self.bands),
            **{k + "_total": v for k, v in self.role_count_totals.items()},
        }


@dataclass(frozen=True)
class ClassSystematics:
    """Result of :func:`systematics_by_class`.

    Attributes
    ----------
    by_role
        ``{"lens": ..., "control": ...}`` over the whole cube.
    by_split
        ``{split name: {"lens": ..., "control": ...}}`` for each split with stamps.
    flags
        One line per role difference found (empty for a clean cube).
    """

    by_role: dict[str, GroupSystematics]
    by_split: dict[str, dict[str, GroupSystematics]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    @property
    def n_flags(self) -> int:
        """Number of role differences (the ``systematics_role_flags`` gate wants 0)."""
        return len(self.flags)

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON form: ``by_role``, ``by_split``, ``flags``, ``n_flags``."""
        return {
            "by_role": {r: g.to_dict() for r, g in self.by_role.items()},
            "by_split": {name: {r: g.to_dict() for r, g in roles.items()} for name, roles in self.by_split.items()},
            "flags": list(self.flags),
            "n_flags": self.n_flags,
        }


def systematics_by_class(table: xr.Dataset, ds: xr.Dataset | None = None) -> ClassSystematics:
    """Summaries by role and by split x role, and the list of role differences (``flags``).

    Parameters
    ----------
    table
        The computed per-pair table (:func:`~lensarray.diagnostics.features.pair_table`).
    ds
        The cube, to audit its per-sample variables (optional).

    Returns
    -------
    ClassSystematics
        ``by_role``, ``by_split``, ``flags``; ``.to_dict()`` is the report's ``systematics`` section.
    """
    bands = [str(b) for b in table["band"].values]
    by_role_summ = class_summary(table, ("role",)).compute()
    by_role = {r: GroupSystematics.from_summary(by_role_summ.sel(role=r), bands) for r in ROLES}
    by_split: dict[str, dict[str, GroupSystematics]] = {}
    if "split" in table:
        by_split_summ = class_summary(table, ("split", "role")).compute()
        for code, name in enumerate(SPLIT_NAMES):
            g = by_split_summ.sel(split=code)
            if int(g["n"].sum()) > 0:
                by_split[name] = {r: GroupSystematics.from_summary(g.sel(role=r), bands) for r in ROLES}
    n = int(table.sizes["pair"])
    flags = []
    for k in ROLE_COUNTS:
        a, b = table[k].sel(role="lens").values, table[k].sel(role="control").values
        differ = a != b
        if differ.any():
            flags.append(
                f"{k}: lens and control stamps differ in {int(differ.sum())} of {n} pairs "
                f"(lens total {int(np.sum(a))}, control total {int(np.sum(b))})"
            )
    if ds is not None:
        for name, vals in per_sample_variables(ds).items():
            a, b = vals[:, 0], vals[:, 1]
            differ = ~((a == b) | (_isnan(a) & _isnan(b)))
            if differ.any():
                flags.append(
                    f"{name}: per-sample variable differs between lens and control in "
                    f"{int(np.sum(differ.reshape(n, -1).any(axis=1)))} of {n} pairs"
                )
    return ClassSystematics(by_role=by_role, by_split=by_split, flags=flags)


def _isnan(a: np.ndarray) -> np.ndarray:
    return np.isnan(a) if np.issubdtype(np.asarray(a).dtype, np.floating) else np.zeros(np.shape(a), bool)
