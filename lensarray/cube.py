"""The cube: schema (names, dims, dtypes, units), template, ``open_cube`` and the accessor.

One ``xarray.Dataset`` per data set, chunked along ``pair`` only. The lens stamp is
``host + arc`` and the control stamp is ``host``; nothing redundant is stored. The schema
(:mod:`lensarray.schema`, re-exported here) is the contract between the pipeline (writes),
diagnostics and the training loader (read).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .errors import BadInputError

# the schema lives in lensarray.schema (which store.py imports instead of this module); its
# names stay importable from here, where readers have always found them
from .schema import IMAGE_VARS as IMAGE_VARS
from .schema import NEGATIVE_KINDS as NEGATIVE_KINDS
from .schema import PAIR_VARS as PAIR_VARS
from .schema import SCHEMA_VERSION as SCHEMA_VERSION
from .schema import SPLIT_NAMES as SPLIT_NAMES
from .schema import VARIABLES as VARIABLES
from .schema import CubeSchemaError as CubeSchemaError
from .schema import VarSpec as VarSpec
from .schema import check_schema_version as check_schema_version
from .schema import template as template
from .schema import template_attrs as template_attrs
from .schema import template_coords as template_coords
from .schema import validate_cube as validate_cube

__all__ = ["open_cube", "LensArrayAccessor"]


def open_cube(
    url: str,
    *,
    storage_options: dict | None = None,
    chunks: str | dict | None = "shard",
    validate: bool = True,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open a lensarray cube lazily from a local path or fsspec URL (``s3://...``).

    Parameters
    ----------
    url
        Store location.
    storage_options
        fsspec options (endpoint, credentials); never stored.
    chunks
        ``"shard"`` (default): one dask chunk per Zarr shard, the efficient read unit for
        whole-cube reductions; any other value is passed to :func:`xarray.open_zarr`.
    validate
        Check the schema and raise :class:`CubeSchemaError` on a foreign or newer store.
    allow_incomplete
        A cube with unbuilt shards raises :class:`lensarray.errors.IncompleteCubeError` (naming
        the missing shards and the resume command) unless this is True; then only the built
        pairs are returned (attr ``unbuilt_shards`` lists the others), never fill values. A
        store written without lensarray's writer (no completion record) opens with a warning.
    """
    from .store import open_dataset  # store imports the schema, never this module: no cycle

    return open_dataset(
        url, storage_options=storage_options, chunks=chunks, validate=validate, allow_incomplete=allow_incomplete
    )


@xr.register_dataset_accessor("lensarray")
class LensArrayAccessor:
    """``ds.lensarray``: lazy operations on a cube (built, opened from a store, or lazy).

    Every method returns xarray objects backed by dask when the cube is: nothing is computed
    until asked. Geometry comes from :mod:`lensarray.geometry`, derived quantities from
    :mod:`lensarray.derived`, the per-pair pixel measures from
    :func:`lensarray.diagnostics.features.pair_measures`: the functions the build and diagnose use.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    @property
    def config(self) -> dict:
        """The run configuration stored in attrs (dict)."""
        raw = self._ds.attrs.get("config", "{}")
        return json.loads(raw) if isinstance(raw, str) else dict(raw)

    def _run_config(self):
        from .diagnostics.features import cube_config

        return cube_config(self._ds)

    @property
    def pixel_scale(self) -> float:
        """Arcsec per pixel (attrs, else the stored configuration)."""
        return float(self._ds.attrs.get("pixel_scale", self._run_config().run.pixel_scale))

    @property
    def size(self) -> int:
        """Stamp side, pixels."""
        return int(self._ds.sizes["x"])

    # -- classes ---------------------------------------------------------------------------
    def classes(self) -> xr.Dataset:
        """Per-pair class coordinates: ``split_name`` (str; "" if unassigned) and ``is_lens``
        (a real injection, not a hard negative), lazy where the cube is."""
        ds = self._ds
        names = np.array([*SPLIT_NAMES, ""])
        split = ds["split"] if "split" in ds else xr.full_like(ds["pair"], -1, dtype=np.int8)
        split_name = xr.apply_ufunc(
            lambda c: names[np.where(c < 0, len(SPLIT_NAMES), c)],
            split,
            dask="parallelized",
            output_dtypes=[names.dtype],
        )
        neg = ds["hard_negative"] if "hard_negative" in ds else xr.zeros_like(ds["pair"], dtype=np.int8)
        return xr.Dataset({"split_name": split_name, "is_lens": neg == 0})

    def with_classes(self) -> xr.Dataset:
        """The cube with ``split`` (code), ``split_name``, ``is_lens`` and ``hard_negative`` as
        coordinates on ``pair`` (what a groupby needs)."""
        ds = self._ds
        c = self.classes()
        out = ds.assign_coords(split_name=c["split_name"], is_lens=c["is_lens"])
        return out.set_coords([v for v in ("split", "hard_negative") if v in out.data_vars])

    # -- geometry --------------------------------------------------------------------------
    def radius(self, center: str = "stamp") -> xr.DataArray:
        """Distance of every pixel centre (pixels) from the stamp origin or from each pair's lens.

        Parameters
        ----------
        center
            ``"stamp"``: the stamp origin (pixel size//2, size//2), ``(y, x)``, cached;
            ``"lens"``: the lens centre ``(lens_x, lens_y)`` of each pair (arcsec, converted with
            the pixel scale), ``(pair, y, x)``, lazy where ``lens_x`` is.
        """
        from .geometry import radius_grid

        ds = self._ds
        coords = {"y": ds["y"], "x": ds["x"]}
        attrs = {"units": "pixel", "description": f"distance of the pixel centre from the {center} centre"}
        if center == "stamp":
            return xr.DataArray(radius_grid(self.size), dims=("y", "x"), coords=coords, name="radius", attrs=attrs)
        if center != "lens":
            raise BadInputError(f"center = {center!r}: allowed 'stamp' or 'lens'")
        size, scale = self.size, self.pixel_scale

        def per_pair(lens_x: np.ndarray, lens_y: np.ndarray) -> np.ndarray:
            return radius_grid(size, (lens_x.astype(np.float64) / scale, lens_y.astype(np.float64) / scale))

        r = xr.apply_ufunc(
            per_pair,
            ds["lens_x"],
            ds["lens_y"],
            output_core_dims=[["y", "x"]],
            dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {"y": size, "x": size}},
        )
        return r.assign_coords(coords).rename("radius").assign_attrs(attrs)

    # -- derived quantities ----------------------------------------------------------------
    def _core_radius(self, radius: float | None) -> float:
        return float(self._run_config().diagnostics.core_radius if radius is None else radius)

    def core_flux_fraction(self, radius: float | None = None) -> xr.DataArray:
        """Arc flux inside r < ``radius`` pixels / total arc flux, ``(pair, band)`` float32, lazy.

        Computed by :func:`lensarray.derived.core_flux_fraction`, as the build stores
        ``core_flux_frac``: with the cube's core radius (default) it equals the stored value
        bit for bit.
        """
        from .derived import core_flux_fraction

        r = self._core_radius(radius)
        out = xr.apply_ufunc(
            lambda a: core_flux_fraction(a, core_radius=r).astype(np.float32),
            self._ds["arc"],
            input_core_dims=[["y", "x"]],
            dask="parallelized",
            output_dtypes=[np.float32],
        )
        return out.rename("core_flux_frac").assign_attrs(
            units="", core_radius_px=r, description=VARIABLES["core_flux_frac"].description
        )

    def arc_flux(self) -> xr.DataArray:
        """Total arc flux per pair and band (nanomaggy), float32, lazy (as the build stores it)."""
        from .derived import arc_flux_sums

        out = xr.apply_ufunc(
            lambda a: arc_flux_sums(a, core_radius=0.0)[0].astype(np.float32),
            self._ds["arc"],
            input_core_dims=[["y", "x"]],
            dask="parallelized",
            output_dtypes=[np.float32],
        )
        return out.rename("arc_flux").assign_attrs(units="nanomaggy", description=VARIABLES["arc_flux"].description)

    def arc_snr(self, band: str | None = None) -> xr.DataArray:
        """Matched-filter S/N ``sqrt(sum d^2 invvar)`` of the label signal ``d = lens - control``
        (the arc; ``arc * (1 - w_core)`` with a core-matched control) per pair in ``band``
        (default: the configured S/N band), float32, lazy; :func:`lensarray.derived.matched_filter_snr`."""
        from .derived import matched_filter_snr
        from .masking import control_weights_of

        ds = self._ds
        band = band or self._run_config().brightness.snr_band
        bands = [str(b) for b in ds["band"].values]
        if band not in bands:
            raise ValueError(f"band = {band!r}: allowed one of {', '.join(bands)}")
        signal = ds["arc"].sel(band=band, drop=True)
        w_core = control_weights_of(ds.attrs, self.size)
        if w_core is not None:
            signal = signal * xr.DataArray(np.float32(1.0) - w_core, dims=("y", "x"))
        out = xr.apply_ufunc(
            lambda a, w: matched_filter_snr(a, w).astype(np.float32),
            signal,
            ds["invvar"].sel(band=band, drop=True),
            input_core_dims=[["y", "x"], ["y", "x"]],
            dask="parallelized",
            output_dtypes=[np.float32],
        )
        return out.rename("arc_snr").assign_attrs(units="", band=band, description=VARIABLES["arc_snr"].description)

    def derive(self, radius: float | None = None) -> xr.Dataset:
        """``arc_flux``, ``arc_snr`` and ``core_flux_frac`` re-derived lazily from the arc."""
        return xr.Dataset(
            {"arc_flux": self.arc_flux(), "arc_snr": self.arc_snr(), "core_flux_frac": self.core_flux_fraction(radius)}
        )

    def mask_core(self, policy: str = "hard", radius: float = 5.0, width: float = 1.0) -> xr.Dataset:
        """The cube with its arcs multiplied by a core-mask policy's weights, lazily.

        ``arc_flux``, ``arc_snr`` and ``core_flux_frac`` are re-derived (lazily) from the masked
        arc; attrs ``core_mask_policy`` records the policy. The weights are
        :func:`lensarray.masking.core_mask_weights` (the build's).

        Parameters
        ----------
        policy
            ``"none"``, ``"hard"`` or ``"taper"``.
        radius, width
            Pixels.
        """
        from .masking import core_mask_policy_attr, core_mask_weights

        ds = self._ds
        w = xr.DataArray(core_mask_weights(self.size, policy, radius, width), dims=("y", "x"))
        arc = (ds["arc"] * w).astype(np.float32).assign_attrs(ds["arc"].attrs)
        out = ds.assign(arc=arc)
        out.attrs = dict(ds.attrs, core_mask_policy=core_mask_policy_attr(policy, radius, width, "arc"))
        derived = out.lensarray.derive()
        for k in ("arc_flux", "arc_snr", "core_flux_frac"):
            derived[k].attrs = ds[k].attrs if k in ds else derived[k].attrs
        return out.assign(**{k: derived[k] for k in derived.data_vars})

    # -- views and reductions --------------------------------------------------------------
    def stamps(self, *, split: str | None = None) -> xr.DataArray:
        """Lazy ``stamp(sample, band, y, x)``: every pair twice, lens (host + arc) then control.

        ``sample`` stacks (pair, role) with role in {"lens", "control"}; coordinates
        ``pair``, ``role``, ``is_lens`` (False for controls and for the "lens" role of a
        hard-negative pair), ``split`` and ``hard_negative`` travel with every sample.

        Parameters
        ----------
        split
            Keep only pairs of this split ("train", "val", "test").
        """
        ds = self._ds
        if split is not None:
            if split not in SPLIT_NAMES:
                raise BadInputError(f"split = {split!r}: allowed one of {', '.join(SPLIT_NAMES)}")
            ds = ds.isel(pair=np.flatnonzero(ds["split"].values == SPLIT_NAMES.index(split)))
        from .masking import control_stamp, control_weights_of

        host = ds["host"]
        lens = host + ds["arc"]
        control = control_stamp(host, ds["arc"], control_weights_of(ds.attrs, int(ds.sizes["x"])))
        stacked = xr.concat([lens, control], dim=xr.DataArray(["lens", "control"], dims="role", name="role"))
        stacked = stacked.transpose("pair", "role", "band", "y", "x")
        st = stacked.stack(sample=("pair", "role"))
        st = st.transpose("sample", "band", "y", "x")
        neg = ds["hard_negative"].values if "hard_negative" in ds else np.zeros(ds.sizes["pair"], np.int8)
        role = np.tile(np.array(["lens", "control"]), ds.sizes["pair"])
        is_lens = (role == "lens") & np.repeat(neg == 0, 2)
        extra = {"is_lens": ("sample", is_lens), "hard_negative": ("sample", np.repeat(neg, 2))}
        if "split" in ds:
            extra["split"] = ("sample", np.repeat(ds["split"].values, 2))
        st = st.assign_coords(extra)
        st.name = "stamp"
        st.attrs = {
            "units": "nanomaggy",
            "description": f"lens = host + arc; control = {ds.attrs.get('control_stamp', 'host')}",
        }
        return st

    def to_zarr(
        self,
        url: str,
        *,
        resume: bool = False,
        overwrite: bool = False,
        client=None,
        storage_options: dict | None = None,
        progress: bool = False,
        repair: bool = False,
    ):
        """Write this cube (lazy or loaded) to ``url`` in whole shards with digests and done
        markers: :func:`lensarray.store.write_cube` (see there for every parameter).

        Returns
        -------
        lensarray.store.WriteResult
        """
        from .store import write_cube

        return write_cube(
            self._ds,
            url,
            resume=resume,
            overwrite=overwrite,
            repair=repair,
            client=client,
            storage_options=storage_options,
            progress=progress,
        )

    def measures(self, **kwargs) -> xr.Dataset:
        """Per-pair pixel measures (lazy), with ``split`` and ``hard_negative`` attached:
        :func:`lensarray.diagnostics.features.pair_measures` (keywords passed on)."""
        from .diagnostics.features import pair_measures

        ds = self._ds
        m = pair_measures(ds, **kwargs)
        for v in ("split", "hard_negative"):
            if v in ds:
                m[v] = ds[v].reset_coords(drop=True)
        return m

    def summarize(self, by: tuple[str, ...] = ("role", "split"), *, measures: xr.Dataset | None = None) -> xr.Dataset:
        """Systematics by class with flox, lazily: invvar quantiles, per-bit mask-bit fractions,
        bad-pixel fraction, NaN / inf / no-data-flux counts per group (see
        :func:`lensarray.diagnostics.systematics.class_summary`; ``by`` any of ``role``,
        ``split``, ``is_lens``, ``hard_negative``). ``measures`` reuses a :meth:`measures` result."""
        from .diagnostics.systematics import class_summary

        return class_summary(measures if measures is not None else self.measures(), tuple(by))

    def binned(
        self, var: str | xr.DataArray, by: str | xr.DataArray = "theta_e", bins=None, func: str = "nanmedian"
    ) -> xr.DataArray:
        """A per-pair variable reduced in bins of another, exactly, with flox.

        Bins follow :func:`lensarray.statistics.bin_index` (half-open, the last closed; values
        outside the edges are left out); the per-pair vectors are put in one chunk and reduced
        with ``method="blockwise"``, so quantiles and medians are exact.

        Parameters
        ----------
        var
            Name of a per-pair variable (dims ``pair[, band]``) or a DataArray along ``pair``.
        by
            Name or DataArray of the binned per-pair quantity (e.g. ``theta_e`` in arcsec).
        bins
            Bin edges (default: :data:`lensarray.statistics.THETA_E_EDGES`).
        func
            A flox aggregation (``nanmedian``, ``nanmean``, ``count``, ``nansum``, ...).

        Returns
        -------
        xarray.DataArray
            Dims ``(<by>_bin[, band])`` with coordinates ``<by>_lo``, ``<by>_hi``.
        """
        from flox.xarray import xarray_reduce

        from .statistics import THETA_E_EDGES, bin_index

        ds = self._ds
        v = ds[var] if isinstance(var, str) else var
        b = ds[by] if isinstance(by, str) else by
        name = b.name or "by"
        edges = np.asarray(THETA_E_EDGES if bins is None else bins, dtype=np.float64)
        edge_list = edges.tolist()
        code = xr.apply_ufunc(lambda x: bin_index(x, edge_list), b, dask="parallelized", output_dtypes=[np.int64])
        code = code.rename(f"{name}_bin").reset_coords(drop=True)
        v = v.reset_coords(drop=True)
        if hasattr(v.data, "dask") or hasattr(code.data, "dask"):
            v, code = v.chunk({"pair": -1}), code.chunk({"pair": -1})
        out = xarray_reduce(
            v,
            code,
            func=func,
            dim="pair",
            expected_groups=np.arange(edges.size - 1),
            method="blockwise" if hasattr(v.data, "dask") else None,
            fill_value=0 if func in ("count", "sum", "nansum") else np.nan,
        )
        out = out.transpose(f"{name}_bin", ...)
        return out.assign_coords({f"{name}_lo": (f"{name}_bin", edges[:-1]), f"{name}_hi": (f"{name}_bin", edges[1:])})

    def batches(self, split: str | None = "train", **kwargs):
        """Shuffled training batches of this cube: :func:`lensarray.training.batches` (same keywords)."""
        from .training import batches

        return batches(self._ds, split, **kwargs)

    def pair_table(self, names: list[str] | None = None):
        """Per-pair scalar variables as a ``pandas.DataFrame`` (computed; small)."""
        ds = self._ds
        names = names or [n for n in PAIR_VARS if n in ds and ds[n].dims == ("pair",)]
        return ds[names].to_dataframe()
