"""The cube schema: variable names, dims, dtypes and units, code tables, the template and the
one schema check.

What the writer (:mod:`lensarray.store`), the pipeline and every reader share. It imports no I/O
module, so :mod:`lensarray.store` and :mod:`lensarray.cube` (``open_cube`` and the accessor,
which call the store) both depend on it and not on each other in a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from . import conventions
from .conventions import NEGATIVE_KINDS as NEGATIVE_KINDS
from .conventions import SPLIT_NAMES as SPLIT_NAMES
from .errors import BadInputError

__all__ = [
    "SCHEMA_VERSION",
    "VARIABLES",
    "IMAGE_VARS",
    "PAIR_VARS",
    "VarSpec",
    "CubeSchemaError",
    "SPLIT_NAMES",
    "NEGATIVE_KINDS",
    "template",
    "template_attrs",
    "template_coords",
    "validate_cube",
    "check_schema_version",
]

#: Bumped on any incompatible change of names, dims or meanings.
SCHEMA_VERSION = 1


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
    "arc": VarSpec(
        _IMG, "float32", "nanomaggy", "injected light: noise-free, PSF-convolved, after the core-mask policy"
    ),
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
    "arc_snr": VarSpec(
        _P, "float32", "", "matched-filter S/N sqrt(sum d^2 invvar) of d = lens - control in the S/N band", np.nan
    ),
    "arc_snr_aperture": VarSpec(
        _P,
        "float32",
        "",
        "aperture S/N sum(d) / sqrt(sum 1/invvar) of d = lens - control "
        "in the theta_E +/- w annulus around the lens centre, S/N band (w in attrs)",
        np.nan,
    ),
    "core_flux_frac": VarSpec(
        _PB,
        "float32",
        "",
        "stored arc flux at r < diagnostics.core_radius from the "
        "core centre (stamp origin, or lens centre: attrs) / total stored arc flux",
        np.nan,
    ),
    "mu": VarSpec(_P, "float32", "", "total magnification (lensed flux / unlensed flux, before PSF)", np.nan),
    "inner_image_r": VarSpec(
        _P,
        "float32",
        "pixel",
        "analytic SIS radius |theta_E - beta| of the inner (counter) image from the lens centre, "
        "ignoring ellipticity and shear (beta = |src - lens|); NaN if none (beta >= theta_E)",
        np.nan,
    ),
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


def template(
    n_pairs: int, bands: tuple[str, ...] | list[str], size: int, *, attrs: dict | None = None, chunk_pairs: int = 16
) -> xr.Dataset:
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
    coords = {"pair": np.arange(n_pairs, dtype=np.int64), **template_coords(bands, size)}
    ds = xr.Dataset(data_vars, coords=coords)
    conventions.apply(ds, VARIABLES)  # CF long_name / units / flags on every variable and coordinate
    ds.attrs.update(template_attrs())
    if attrs:
        ds.attrs.update(attrs)
    return ds


def template_attrs() -> dict[str, Any]:
    """Attributes every cube carries whatever its configuration (schema, code tables)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "split_names": list(SPLIT_NAMES),
        "hard_negative_kinds": list(NEGATIVE_KINDS),
    }


def template_coords(bands: tuple[str, ...] | list[str], size: int) -> dict[str, np.ndarray]:
    """The ``band``, ``y``, ``x`` coordinates of a cube (``pair`` is the caller's)."""
    bands = list(bands)
    return {
        "band": np.array(bands, dtype="<U1" if all(len(b) == 1 for b in bands) else "<U8"),
        "y": np.arange(size, dtype=np.int32),
        "x": np.arange(size, dtype=np.int32),
    }


def check_schema_version(attrs: dict, *, where: str = "dataset", for_build: bool = False) -> int:
    """The cube's ``schema_version`` from its attrs, or :class:`CubeSchemaError`: the one schema
    version check (opening, validating and resuming a build all call it).

    Parameters
    ----------
    attrs
        Dataset or Zarr group attributes.
    where
        What to name in the error (URL or "dataset").
    for_build
        Resuming a build needs this exact version (and the run ``config``); reading needs <= it.
    """
    ver = attrs.get("schema_version")
    if ver is None or (for_build and "config" not in attrs):
        need = "'schema_version'/'config' attributes" if for_build else "'schema_version' attribute"
        raise CubeSchemaError(f"{where} is not a lensarray cube (no {need})")
    if for_build and int(ver) != SCHEMA_VERSION:
        raise CubeSchemaError(
            f"{where} has schema_version {ver}; this lensarray builds {SCHEMA_VERSION}: "
            "resume it with the lensarray that created it"
        )
    if int(ver) > SCHEMA_VERSION:
        raise CubeSchemaError(
            f"{where} has schema_version {ver}; this lensarray reads <= {SCHEMA_VERSION}: upgrade lensarray"
        )
    return int(ver)


def validate_cube(ds: xr.Dataset, *, where: str = "dataset") -> xr.Dataset:
    """Check that ``ds`` follows the schema this version reads; raise :class:`CubeSchemaError`."""
    check_schema_version(ds.attrs, where=where)
    missing = [n for n in ("host", "invvar", "maskbits", "arc") if n not in ds.variables]
    if missing:
        raise CubeSchemaError(f"{where} lacks required variables {missing}")
    for name, spec in VARIABLES.items():
        if name in ds.variables and tuple(ds[name].dims) != spec.dims:
            raise CubeSchemaError(f"{where}: variable {name!r} has dims {ds[name].dims}, expected {spec.dims}")
    return ds
