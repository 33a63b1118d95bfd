"""Physics kernel: pure array code (numpy/numba), no Dask, no xarray, no configuration objects.

Units: angles in arcsec, fluxes in image units (nanomaggy), magnitudes AB.
"""

from .lens import (
    inner_image_radius,
    ray_shoot,
    shear_deflection,
    sie_deflection,
    sis_image_positions,
    sis_magnification,
)
from .photometry import mag_to_nmgy, nmgy_to_mag, psfdepth_mag_to_sigma
from .psf import fft_convolve, gaussian_psf, moffat_psf
from .render import render_arcs, render_unit_arcs
from .source import sersic_ellipse, sersic_total_flux

__all__ = [
    "render_arcs",
    "render_unit_arcs",
    "sie_deflection",
    "shear_deflection",
    "ray_shoot",
    "sis_image_positions",
    "inner_image_radius",
    "sis_magnification",
    "mag_to_nmgy",
    "nmgy_to_mag",
    "psfdepth_mag_to_sigma",
    "gaussian_psf",
    "moffat_psf",
    "fft_convolve",
    "sersic_ellipse",
    "sersic_total_flux",
]
