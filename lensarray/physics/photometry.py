"""Photometry: AB magnitudes <-> nanomaggies, depth -> noise.

A nanomaggy is the flux of an AB = 22.5 source; the Legacy Surveys image unit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mag_to_nmgy", "nmgy_to_mag", "psfdepth_mag_to_sigma"]


def mag_to_nmgy(mag, zero_point: float = 22.5) -> np.ndarray:
    """Flux in image units (nanomaggy for ``zero_point`` 22.5) of an AB magnitude."""
    return 10.0 ** ((zero_point - np.asarray(mag, dtype=np.float64)) / 2.5)


def nmgy_to_mag(flux, zero_point: float = 22.5) -> np.ndarray:
    """AB magnitude of a flux in image units; NaN for flux <= 0."""
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, zero_point - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)


def psfdepth_mag_to_sigma(depth_mag, zero_point: float = 22.5) -> np.ndarray:
    """1-sigma point-source flux error (image units) of a 5-sigma point-source depth (AB mag)."""
    return mag_to_nmgy(depth_mag, zero_point) / 5.0
