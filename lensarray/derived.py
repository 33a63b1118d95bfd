"""Per-pair quantities derived from the stored arc (after the core-mask policy): one implementation each.

The build stores them (:func:`arc_statistics`), diagnose re-measures them from the pixels, the
accessor derives them lazily from any cube, the S/N calibration and the toy cubes use them: all
through the functions below, so the stored and the re-measured numbers agree bit for bit.
"""

from __future__ import annotations

import numpy as np

from .geometry import core_pixels, radius_grid

__all__ = [
    "arc_statistics",
    "matched_filter_snr",
    "aperture_snr",
    "core_flux_fraction",
    "arc_flux_sums",
    "fraction_of_total",
    "inner_image_radius_px",
]


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


def arc_flux_sums(
    arcs: np.ndarray, *, core_radius: float, core_centre: tuple | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(total, core)``: arc flux over the stamp and inside r < ``core_radius`` pixels, float64 ``(...)``.

    ``core_centre = (x, y)``: ``(n,)`` per-pair offsets (pixels) of the core centre from the stamp
    origin (``arcs`` then ``(n, ..., y, x)``); ``None``: the stamp origin.
    """
    a = np.asarray(arcs, dtype=np.float64)
    if core_centre is None:
        return a.sum(axis=(-2, -1)), a[..., core_pixels(a.shape[-1], core_radius)].sum(axis=-1)
    inside = radius_grid(a.shape[-1], core_centre) < core_radius  # (n, y, x)
    inside = inside.reshape(inside.shape[:1] + (1,) * (a.ndim - 3) + inside.shape[1:])
    return a.sum(axis=(-2, -1)), np.sum(a * inside, axis=(-2, -1))


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


def arc_statistics(
    arcs: np.ndarray, invvar: np.ndarray, *, core_radius: float, snr_band_index: int, core_centre: tuple | None = None
) -> dict:
    """Flux, S/N and core flux fraction of arcs.

    Parameters
    ----------
    arcs, invvar
        ``(n, band, size, size)``: arc (nanomaggy) and inverse variance (nanomaggy^-2).
    core_radius
        Core radius, pixels (``r < core_radius`` from the stamp origin, or from ``core_centre``).
    core_centre
        ``(x, y)`` per-pair offsets (pixels, arrays ``(n,)``) of the core centre from the stamp
        origin, e.g. the lens centre; ``None``: the stamp origin.
    snr_band_index
        Band whose matched-filter S/N is ``arc_snr``.

    Returns
    -------
    dict
        ``arc_flux`` (n, band) nanomaggy, ``arc_snr`` (n,), ``core_flux_frac`` (n, band), float32
        as stored.
    """
    a = np.asarray(arcs, dtype=np.float64)
    total, core = arc_flux_sums(a, core_radius=core_radius, core_centre=core_centre)
    snr = matched_filter_snr(a[:, snr_band_index], np.asarray(invvar)[:, snr_band_index])
    return {
        "arc_flux": total.astype(np.float32),
        "arc_snr": snr.astype(np.float32),
        "core_flux_frac": fraction_of_total(core, total).astype(np.float32),
    }


def aperture_snr(
    arcs: np.ndarray, invvar: np.ndarray, theta_e_px: np.ndarray, halfwidth_px: float, centre: tuple | None = None
) -> np.ndarray:
    """Aperture S/N of lens searches: arc flux in the annulus ``|r - theta_E| < w`` over its noise.

    ``sum(arc) / sqrt(sum(1 / invvar))`` over the annulus pixels with ``invvar > 0`` (the noise
    of a plain flux sum, not a matched filter: on the same arc it reads ~0.5-0.8x
    :func:`matched_filter_snr`). Linear in flux, so a target can be calibrated exactly.

    Parameters
    ----------
    arcs, invvar
        ``(n, size, size)``: one band of the arc (nanomaggy) and its inverse variance (nanomaggy^-2).
    theta_e_px
        ``(n,)`` Einstein radius, pixels.
    halfwidth_px
        Annulus half-width w, pixels.
    centre
        ``(x, y)`` per-pair offsets (pixels) of the lens centre from the stamp origin; ``None``:
        the stamp origin.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64; NaN where the annulus holds no pixel with data.
    """
    a = np.asarray(arcs, dtype=np.float64)
    iv = np.asarray(invvar, dtype=np.float64)
    n, size = a.shape[0], a.shape[-1]
    te = np.asarray(theta_e_px, dtype=np.float64).reshape(n, 1, 1)
    dist = np.subtract(radius_grid(size, centre), te)
    np.abs(dist, out=dist)
    sel = dist < halfwidth_px
    sel &= iv > 0
    flux = np.sum(np.where(sel, a, 0.0), axis=(-2, -1))
    # 1 / invvar on the annulus pixels only (all have invvar > 0), 0 elsewhere
    noise_var = np.divide(1.0, iv, out=np.zeros_like(iv), where=sel)
    var = np.sum(noise_var, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, flux / np.sqrt(var), np.nan)
