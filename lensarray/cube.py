"""The cube: schema (names, dims, dtypes, units), template, ``open_cube`` and the accessor.

One ``xarray.Dataset`` per data set, chunked along ``pair`` only. The lens stamp is
``host + arc`` and the control stamp is ``host``; nothing redundant is stored. The schema
is the contract between the pipeline (writes), diagnostics and the training loader (read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from .errors import BadInputError

__all__ = [
    "SCHEMA_VERSION",
    "VARIABLES",
    "VarSpec",
    "CubeSchemaError",
    "SPLIT_NAMES",
    "NEGATIVE_KINDS",
    "template",
    "open_cube",
    "validate_cube",
    "LensArrayAccessor",
]

#: Bumped on any incompatible change of names, dims or meanings.
SCHEMA_VERSION = 1

#: Stored split codes (``split`` variable, int8); -1 means unassigned.
SPLIT_NAMES = ("train", "val", "test")

#: ``hard_negative`` codes (int8): 0 = a real lens injection; ``below_snr_floor`` = a lens
#: injection whose stored arc S/N fell below ``brightness.snr_floor`` (labelled a non-lens).
NEGATIVE_KINDS = ("lens", "ring", "spiral", "tidal", "external", "below_snr_floor")


class CubeSchemaError(BadInputError):
    """The store is not a lensarray cube, or not one this version can read."""


@dataclass(frozen=True)
class VarSpec:
    """One stored variable: dims (symbolic), numpy dtype, units and meaning."""

    dims: tuple[str, ...]
    dtype: str
    units: str
    description: str
    fill: Any = 0


_P, _PB, _IMG, _MASK = ("pair",), ("pair", "band"), ("pair", "band", "y", "x"), ("pair", "y", "x")

VARIABLES: dict[str, VarSpec] = {
    # images
    "host": VarSpec(_IMG, "float32", "nanomaggy", "host cutout, noise included"),
    "invvar": VarSpec(_IMG, "float32", "nanomaggy^-2", "inverse variance per pixel; 0 = no data"),
    "maskbits": VarSpec(_MASK, "int32", "", "Legacy Surveys DR10 MASKBITS per pixel (bits 0-16)"),
    "arc": VarSpec(_IMG, "float32", "nanomaggy", "injected light: noise-free, PSF-convolved, after the core-mask policy"),
    # lens
    "theta_e": VarSpec(_P, "float32", "arcsec", "SIE Einstein radius (lenstronomy product-average convention)", np.nan),
    "lens_e1": VarSpec(_P, "float32", "", "lens ellipticity e1 (lenstronomy convention)", np.nan),
    "lens_e2": VarSpec(_P, "float32", "", "lens ellipticity e2", np.nan),
    "lens_x": VarSpec(_P, "float32", "arcsec", "lens centre x relative to the stamp origin", np.nan),
    "lens_y": VarSpec(_P, "float32", "arcsec", "lens centre y relative to the stamp origin", np.nan),
    "shear_g1": VarSpec(_P, "float32", "", "external shear gamma1", np.nan),
    "shear_g2": VarSpec(_P, "float32", "", "external shear gamma2", np.nan),
    # source
    "src_x": VarSpec(_P, "float32", "arcsec", "source x in the source plane, relative to the stamp origin", np.nan),
    "src_y": VarSpec(_P, "float32", "arcsec", "source y in the source plane, relative to the stamp origin", np.nan),
    "src_reff": VarSpec(_P, "float32", "arcsec", "source half-light radius (lenstronomy R_sersic)", np.nan),
    "src_n": VarSpec(_P, "float32", "", "source Sersic index", np.nan),
    "src_e1": VarSpec(_P, "float32", "", "source ellipticity e1", np.nan),
    "src_e2": VarSpec(_P, "float32", "", "source ellipticity e2", np.nan),
    "src_mag": VarSpec(_PB, "float32", "AB mag", "unlensed total source magnitude per band", np.nan),
    # psf
    "psf_fwhm": VarSpec(_PB, "float32", "arcsec", "PSF FWHM per band", np.nan),
    "psf_beta": VarSpec(_P, "float32", "", "Moffat beta (NaN for a Gaussian PSF)", np.nan),
    # derived from the stored arc
    "arc_flux": VarSpec(_PB, "float32", "nanomaggy", "total stored arc flux per band", np.nan),
    "arc_snr": VarSpec(_P, "float32", "", "matched-filter S/N sqrt(sum d^2 invvar) of d = lens - control in the S/N band", np.nan),
    "arc_snr_aperture": VarSpec(_P, "float32", "", "aperture S/N sum(d) / sqrt(sum 1/invvar) of d = lens - control "
                                "in the theta_E +/- w annulus around the lens centre, S/N band (w in attrs)", np.nan),
    "core_flux_frac": VarSpec(_PB, "float32", "", "stored arc flux at r < diagnostics.core_radius from the "
                              "core centre (stamp origin, or lens centre: attrs) / total stored arc flux", np.nan),
    "mu": VarSpec(_P, "float32", "", "total magnification (lensed flux / unlensed flux, before PSF)", np.nan),
    "inner_image_r": VarSpec(_P, "float32", "pixel", "analytic SIS radius |theta_E - beta| of the inner (counter) image from the lens centre, "
                             "ignoring ellipticity and shear (beta = |src - lens|); NaN if none (beta >= theta_E)", np.nan),
    # host facts
    "ra": VarSpec(_P, "float64", "deg", "host right ascension (ICRS)", np.nan),
    "dec": VarSpec(_P, "float64", "deg", "host declination (ICRS)", np.nan),
    "brickname": VarSpec(_P, "<U8", "", "DR10 brick name of the host", ""),
    "region": VarSpec(_P, "int32", "", "sky region id used for region-disjoint splits", -1),
    "split": VarSpec(_P, "int8", "", "0 train, 1 val, 2 test, -1 unassigned", -1),
    "psfdepth": VarSpec(_PB, "float32", "AB mag", "5-sigma point-source depth per band", np.nan),
    "host_mag": VarSpec(_PB, "float32", "AB mag", "host total magnitude per band", np.nan),
    "host_reff": VarSpec(_P, "float32", "arcsec", "host half-light radius", np.nan),
    "host_id": VarSpec(_P, "int64", "", "id of the host galaxy (index in the host catalogue or cube)", -1),
    "hard_negative": VarSpec(_P, "int8", "", "0 = lens injection; >0 = hard-negative kind (see attrs)", 0),
}

IMAGE_VARS = tuple(k for k, v in VARIABLES.items() if v.dims in (_IMG, _MASK))
PAIR_VARS = tuple(k for k in VARIABLES if k not in IMAGE_VARS)


def template(n_pairs: int, bands: tuple[str, ...] | list[str], size: int, *, attrs: dict | None = None,
             chunk_pairs: int = 16) -> xr.Dataset:
    """A lazy, all-fill cube of the full schema (dask-backed; nothing is materialised).

    Parameters
    ----------
    n_pairs
        Number of pairs; ``pair`` ids are ``0 .. n_pairs - 1``.
    bands
        Band names in stored order.
    size
        Stamp side in pixels.
    attrs
        Dataset attributes to add (run configuration, seed, ...).
    chunk_pairs
        Dask chunk along ``pair``.
    """
    import dask.array as da

    bands = list(bands)
    shape = {"pair": n_pairs, "band": len(bands), "y": size, "x": size}
    data_vars = {}
    for name, spec in VARIABLES.items():
        shp = tuple(shape[d] for d in spec.dims)
        chunks = tuple(chunk_pairs if d == "pair" else shape[d] for d in spec.dims)
        data = da.full(shp, spec.fill, dtype=np.dtype(spec.dtype), chunks=chunks)
        data_vars[name] = xr.Variable(spec.dims, data, attrs={"units": spec.units, "description": spec.description})
    coords = {
        "pair": np.arange(n_pairs, dtype=np.int64),
        "band": np.array(bands, dtype="<U1" if all(len(b) == 1 for b in bands) else "<U8"),
        "y": np.arange(size, dtype=np.int32),
        "x": np.arange(size, dtype=np.int32),
    }
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({"schema_version": SCHEMA_VERSION, "split_names": list(SPLIT_NAMES),
                     "hard_negative_kinds": list(NEGATIVE_KINDS)})
    if attrs:
        ds.attrs.update(attrs)
    return ds


def validate_cube(ds: xr.Dataset, *, where: str = "dataset") -> xr.Dataset:
    """Check that ``ds`` follows the schema this version reads; raise :class:`CubeSchemaError`."""
    ver = ds.attrs.get("schema_version")
    if ver is None:
        raise CubeSchemaError(f"{where} is not a lensarray cube (no 'schema_version' attribute)")
    if int(ver) > SCHEMA_VERSION:
        raise CubeSchemaError(
            f"{where} has schema_version {ver}; this lensarray reads <= {SCHEMA_VERSION}: upgrade lensarray")
    missing = [n for n in ("host", "invvar", "maskbits", "arc") if n not in ds.variables]
    if missing:
        raise CubeSchemaError(f"{where} lacks required variables {missing}")
    for name, spec in VARIABLES.items():
        if name in ds.variables and tuple(ds[name].dims) != spec.dims:
            raise CubeSchemaError(f"{where}: variable {name!r} has dims {ds[name].dims}, expected {spec.dims}")
    return ds


def open_cube(url: str, *, storage_options: dict | None = None, chunks: str | dict | None = "shard",
              validate: bool = True) -> xr.Dataset:
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
    """
    from .store import open_dataset  # local import keeps cube.py free of I/O at import

    return open_dataset(url, storage_options=storage_options, chunks=chunks, validate=validate)


@xr.register_dataset_accessor("lensarray")
class LensArrayAccessor:
    """``ds.lensarray``: views of a cube used by diagnostics and the training loader."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    @property
    def config(self) -> dict:
        """The run configuration stored in attrs (dict)."""
        raw = self._ds.attrs.get("config", "{}")
        return json.loads(raw) if isinstance(raw, str) else dict(raw)

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
                raise ValueError(f"split = {split!r}: allowed one of {', '.join(SPLIT_NAMES)}")
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
        st.attrs = {"units": "nanomaggy",
                    "description": f"lens = host + arc; control = {ds.attrs.get('control_stamp', 'host')}"}
        return st

    def pair_table(self, names: list[str] | None = None):
        """Per-pair scalar variables as a ``pandas.DataFrame`` (computed; small)."""
        ds = self._ds
        names = names or [n for n in PAIR_VARS if n in ds and ds[n].dims == ("pair",)]
        return ds[names].to_dataframe()
