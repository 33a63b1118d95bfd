"""CF metadata of a cube: ``long_name``, ``units``, flag encodings and coordinate attributes.

One table keyed by variable name, applied to the template (:func:`apply`), so every stored
variable and coordinate carries CF-1.11 attributes that xarray, cf_xarray and astropy read:

- ``units`` parse with :func:`astropy.units.Unit` (``"nanomaggy"``, ``"mag(AB)"``, ``"1"`` for
  dimensionless numbers); string and flag variables carry none, as CF asks.
- coded variables carry ``flag_values`` + ``flag_meanings`` (``split``, ``hard_negative``) or
  ``flag_masks`` + ``flag_meanings`` (``maskbits``, Legacy Surveys DR10 MASKBITS bits 0-16), so
  ``ds.cf["split"] == "train"`` works with cf_xarray.

The schema itself (dims, dtypes, meanings) stays in :mod:`lensarray.schema`, which imports this
module (never the other way round); a variable without an entry here gets its schema
description as ``long_name``. The code vocabularies of the coded variables (:data:`SPLIT_NAMES`,
:data:`NEGATIVE_KINDS`) live here, next to the flag encodings that spell them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import xarray as xr

__all__ = [
    "CONVENTIONS",
    "COORDINATES",
    "MASKBITS",
    "CF_VERSION",
    "SPLIT_NAMES",
    "NEGATIVE_KINDS",
    "REFERENCE_BAND",
    "reference_band_index",
    "apply",
    "attrs_for",
]

#: Stored split codes (``split`` variable, int8); -1 means unassigned.
SPLIT_NAMES = ("train", "val", "test")

#: ``hard_negative`` codes (int8): 0 = a real lens injection; ``below_snr_floor`` = a lens
#: injection whose stored arc S/N fell below ``brightness.snr_floor`` (labelled a non-lens).
NEGATIVE_KINDS = ("lens", "ring", "spiral", "tidal", "external", "below_snr_floor")

#: The band of the single-band quantities (the planner's PSF and depth, evaluation's PSF bins,
#: the report's gallery, toy-cube S/N): r, else the first band of the cube.
REFERENCE_BAND = "r"


def reference_band_index(bands) -> int:
    """Position of :data:`REFERENCE_BAND` in ``bands`` (band names), else 0 (the first band)."""
    names = [str(b) for b in bands]
    return names.index(REFERENCE_BAND) if REFERENCE_BAND in names else 0


#: The CF version the attributes follow (global ``Conventions`` attribute).
CF_VERSION = "CF-1.11"

#: Legacy Surveys DR10 MASKBITS, bit -> name (https://www.legacysurvey.org/dr10/bitmasks/).
MASKBITS = (
    "NPRIMARY",
    "BRIGHT",
    "SATUR_G",
    "SATUR_R",
    "SATUR_Z",
    "ALLMASK_G",
    "ALLMASK_R",
    "ALLMASK_Z",
    "WISEM1",
    "WISEM2",
    "BAILOUT",
    "MEDIUM",
    "GALAXY",
    "CLUSTER",
    "SATUR_I",
    "ALLMASK_I",
    "SUB_BLOB",
)

_MAG = "mag(AB)"


def _split_flags() -> dict[str, Any]:
    # -1 is the fill value: a pair not yet built, or whose region was unseen at planning
    return {"flag_values": [-1, *range(len(SPLIT_NAMES))], "flag_meanings": " ".join(["unassigned", *SPLIT_NAMES])}


def _negative_flags() -> dict[str, Any]:
    return {"flag_values": list(range(len(NEGATIVE_KINDS))), "flag_meanings": " ".join(NEGATIVE_KINDS)}


#: Per-variable CF attributes (``units`` given here override the schema's).
CONVENTIONS: dict[str, dict[str, Any]] = {
    "host": {"long_name": "host galaxy cutout (noise included)"},
    "invvar": {"long_name": "inverse variance of the host pixel"},
    "maskbits": {
        "long_name": "Legacy Surveys DR10 MASKBITS",
        "flag_masks": [1 << b for b in range(len(MASKBITS))],
        "flag_meanings": " ".join(MASKBITS),
    },
    "arc": {"long_name": "injected lensed arc (noise-free, PSF-convolved, core-masked)"},
    "theta_e": {"long_name": "SIE Einstein radius"},
    "lens_e1": {"long_name": "lens ellipticity component e1"},
    "lens_e2": {"long_name": "lens ellipticity component e2"},
    "lens_x": {"long_name": "lens centre x offset"},
    "lens_y": {"long_name": "lens centre y offset"},
    "shear_g1": {"long_name": "external shear component gamma1"},
    "shear_g2": {"long_name": "external shear component gamma2"},
    "src_x": {"long_name": "source-plane x position"},
    "src_y": {"long_name": "source-plane y position"},
    "src_reff": {"long_name": "source half-light radius"},
    "src_n": {"long_name": "source Sersic index"},
    "src_e1": {"long_name": "source ellipticity component e1"},
    "src_e2": {"long_name": "source ellipticity component e2"},
    "src_mag": {"long_name": "unlensed source magnitude", "units": _MAG},
    "psf_fwhm": {"long_name": "PSF full width at half maximum"},
    "psf_beta": {"long_name": "Moffat PSF beta"},
    "arc_flux": {"long_name": "stored arc flux"},
    "arc_snr": {"long_name": "matched-filter arc signal-to-noise ratio"},
    "core_flux_frac": {"long_name": "fraction of arc flux inside the core radius"},
    "mu": {"long_name": "total magnification"},
    "inner_image_r": {"long_name": "radius of the inner (counter) image"},
    "ra": {"long_name": "host right ascension", "standard_name": "right_ascension"},
    "dec": {"long_name": "host declination", "standard_name": "declination"},
    "brickname": {"long_name": "DR10 brick name"},
    "region": {"long_name": "sky region id of the split"},
    "split": {"long_name": "train/val/test split", "flags": _split_flags},
    "psfdepth": {"long_name": "5-sigma point-source depth", "units": _MAG},
    "host_mag": {"long_name": "host total magnitude", "units": _MAG},
    "host_reff": {"long_name": "host half-light radius"},
    "host_id": {"long_name": "host galaxy id"},
    "hard_negative": {"long_name": "hard-negative kind (0 = lens injection)", "flags": _negative_flags},
}

#: Coordinate attributes.
COORDINATES: dict[str, dict[str, Any]] = {
    "pair": {"long_name": "pair id (stable across rebuilds and resumes)", "units": "1"},
    "band": {"long_name": "photometric band"},
    "y": {"long_name": "pixel row from the stamp's first row (lens centre at size // 2)", "units": "pixel"},
    "x": {"long_name": "pixel column from the stamp's first column (lens centre at size // 2)", "units": "pixel"},
}


def attrs_for(name: str, schema_units: str, description: str, dtype: str) -> dict[str, Any]:
    """CF attributes of variable ``name`` (schema units and description as the fallback)."""
    entry = dict(CONVENTIONS.get(name, {}))
    flags = entry.pop("flags", None)
    out: dict[str, Any] = {"long_name": entry.pop("long_name", description)}
    coded = flags is not None or "flag_masks" in entry
    if not coded and not dtype.startswith("<U"):
        out["units"] = entry.pop("units", schema_units) or "1"
    entry.pop("units", None)
    out.update(entry)
    if flags is not None:
        out.update(flags())
    out["description"] = description
    return out


class _Spec(Protocol):
    @property
    def units(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def dtype(self) -> str: ...


def apply(ds: xr.Dataset, variables: Mapping[str, _Spec]) -> xr.Dataset:
    """Set the CF attributes of every schema variable and coordinate of ``ds`` (in place) and
    the global ``Conventions``; returns ``ds``.

    Parameters
    ----------
    ds
        The cube (template or lazy).
    variables
        The schema's variable table (:data:`lensarray.schema.VARIABLES`): units, description
        and dtype of each variable.
    """
    for name, spec in variables.items():
        if name in ds.variables:
            ds[name].attrs = attrs_for(name, spec.units, spec.description, spec.dtype)
    for name, attrs in COORDINATES.items():
        if name in ds.coords:
            ds[name].attrs.update(attrs)
    ds.attrs["Conventions"] = CF_VERSION
    return ds
