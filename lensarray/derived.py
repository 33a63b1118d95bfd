"""Per-pair quantities derived from the stored arc (after the core-mask policy): one implementation each.

The build stores them (:func:`arc_statistics`), diagnose re-measures them from the pixels, the
accessor derives them lazily from any cube, the S/N calibration and the toy cubes use them: all
through the functions below, so the stored and the re-measured numbers agree bit for bit.
"""

from __future__ import annotations

import numpy as np

from .geometry import core_pixels

__all__ = ["arc_statistics", "matched_filter_snr", "core_flux_fraction", "arc_flux_sums", "fraction_of_total",
           "inner_image_radius_px"]


def matched_filter_snr(arcs: np.ndarray, invvar: np.ndarray) -> np.ndarray:
    """``sqrt(sum(arc^2 * invvar))`` over the last two axes, float64 (pixels with invvar 0 add nothing).

    Parameters
    ----------
    arcs
        ``(..., y, x)`` noise-free arc images, nanomaggy.
    invvar
        Inverse variance of the same shape, nanomaggy^-2.
    """
    a = np.asarray(arcs, dtype=np.float64)
    return np.sqrt(np.sum(a * a * np.asarray(invvar, dtype=np.float64), axis=(-2, -1)))


def arc_flux_sums(arcs: np.ndarray, *, core_radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``(total, core)``: arc flux over the stamp and inside r < ``core_radius`` pixels, float64 ``(...)``."""
    a = np.asarray(arcs, dtype=np.float64)
    return a.sum(axis=(-2, -1)), a[..., core_pixels(a.shape[-1], core_radius)].sum(axis=-1)


def core_flux_fraction(arcs: np.ndarray, *, core_radius: float) -> np.ndarray:
    """Arc flux inside r < ``core_radius`` pixels (from the stamp origin) over the total, float64.

    Parameters
    ----------
    arcs
        ``(..., y, x)`` arc images (nanomaggy).
    core_radius
        Pixels.

    Returns
    -------
    numpy.ndarray
        ``(...)`` fractions, NaN where the total flux is 0 (e.g. null cubes).
    """
    total, core = arc_flux_sums(arcs, core_radius=core_radius)
    return fraction_of_total(core, total)


def fraction_of_total(part: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``part / total``, NaN where the total is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, part / np.where(total != 0, total, 1.0), np.nan)


def inner_image_radius_px(theta_e, src_x, src_y, *, pixel_scale: float, lens_x=0.0, lens_y=0.0) -> np.ndarray:
    """Radius of the inner (counter) image from the lens centre, pixels; NaN where there is none.

    SIS value ``theta_E - |beta|`` with ``beta = src - lens`` (see
    :func:`lensarray.physics.lens.inner_image_radius`).

    Parameters
    ----------
    theta_e, src_x, src_y, lens_x, lens_y
        Arcsec.
    pixel_scale
        Arcsec per pixel.
    """
    from .physics.lens import inner_image_radius

    beta = np.hypot(np.asarray(src_x, np.float64) - lens_x, np.asarray(src_y, np.float64) - lens_y)
    return inner_image_radius(np.asarray(theta_e, np.float64), beta) / pixel_scale


def arc_statistics(arcs: np.ndarray, invvar: np.ndarray, *, core_radius: float, snr_band_index: int) -> dict:
    """Flux, S/N and core flux fraction of arcs.

    Parameters
    ----------
    arcs, invvar
        ``(n, band, size, size)``: arc (nanomaggy) and inverse variance (nanomaggy^-2).
    core_radius
        Core radius, pixels (``r < core_radius`` from the stamp origin).
    snr_band_index
        Band whose matched-filter S/N is ``arc_snr``.

    Returns
    -------
    dict
        ``arc_flux`` (n, band) nanomaggy, ``arc_snr`` (n,), ``core_flux_frac`` (n, band), float32
        as stored.
    """
    a = np.asarray(arcs, dtype=np.float64)
    total, core = arc_flux_sums(a, core_radius=core_radius)
    snr = matched_filter_snr(a[:, snr_band_index], np.asarray(invvar)[:, snr_band_index])
    return {"arc_flux": total.astype(np.float32), "arc_snr": snr.astype(np.float32),
            "core_flux_frac": fraction_of_total(core, total).astype(np.float32)}
