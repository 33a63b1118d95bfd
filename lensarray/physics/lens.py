"""Singular isothermal ellipsoid + external shear (lenstronomy SIE and SHEAR conventions).

SIE: lenstronomy's NIE with core -> 0. With ``q, phi`` from ``(e1, e2)`` and the
product-averaged Einstein radius ``theta_E``, the major-axis normalisation is
``b = theta_E sqrt(q)`` and, in the frame rotated by ``phi``,

    alpha_x' = b / sqrt(1 - q^2) * arctan(sqrt(1 - q^2) x' / psi)
    alpha_y' = b / sqrt(1 - q^2) * arctanh(sqrt(1 - q^2) y' / psi),   psi = sqrt(q^2 x'^2 + y'^2)

(Kormann et al. 1994; Keeton & Kochanek 1998), which tends to the SIS ``theta_E x / r`` for
q -> 1. Shear: ``alpha = (g1 x + g2 y, g2 x - g1 y)``. Angles in arcsec.
"""

from __future__ import annotations

import numpy as np

from .source import ellipticity_to_q_phi

__all__ = [
    "sie_deflection",
    "shear_deflection",
    "ray_shoot",
    "sis_image_positions",
    "inner_image_radius",
    "sis_magnification",
]

_ROUND = 1e-6  # below this 1 - q the SIS limit is used (no 0/0)


def sie_deflection(x, y, theta_e, e1, e2, center_x=0.0, center_y=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (arcsec) of an SIE at positions (x, y) (arcsec); parameters broadcast."""
    q, phi = ellipticity_to_q_phi(e1, e2)
    theta_e = np.asarray(theta_e, dtype=np.float64)
    dx = np.asarray(x) - center_x
    dy = np.asarray(y) - center_y
    c, s = np.cos(phi), np.sin(phi)
    xr = c * dx + s * dy
    yr = -s * dx + c * dy
    round_ = (1.0 - q) < _ROUND
    q_safe = np.where(round_, 0.5, q)
    b = theta_e * np.sqrt(q_safe)
    f = np.sqrt(1.0 - q_safe * q_safe)
    psi = np.sqrt(q_safe * q_safe * xr * xr + yr * yr)
    psi = np.maximum(psi, 1e-12)
    ax_r = b / f * np.arctan(f * xr / psi)
    ay_r = b / f * np.arctanh(np.clip(f * yr / psi, -1 + 1e-15, 1 - 1e-15))
    if np.any(round_):
        r = np.maximum(np.hypot(xr, yr), 1e-12)
        ax_r = np.where(round_, theta_e * xr / r, ax_r)
        ay_r = np.where(round_, theta_e * yr / r, ay_r)
    # rotate back
    return c * ax_r - s * ay_r, s * ax_r + c * ay_r


def shear_deflection(x, y, g1, g2) -> tuple[np.ndarray, np.ndarray]:
    """External shear deflection (arcsec), zero at the origin."""
    return g1 * x + g2 * y, g2 * x - g1 * y


def ray_shoot(
    x, y, theta_e, lens_e1=0.0, lens_e2=0.0, lens_x=0.0, lens_y=0.0, shear_g1=0.0, shear_g2=0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Source-plane positions ``beta = theta - alpha(theta)`` (arcsec); shear centred on the lens."""
    ax, ay = sie_deflection(x, y, theta_e, lens_e1, lens_e2, lens_x, lens_y)
    sx, sy = shear_deflection(np.asarray(x) - lens_x, np.asarray(y) - lens_y, shear_g1, shear_g2)
    return x - ax - sx, y - ay - sy


def sis_image_positions(theta_e, beta) -> tuple[np.ndarray, np.ndarray]:
    """Radial positions (arcsec, along the source direction) of the SIS images: ``beta + theta_E``
    and ``beta - theta_E`` (the second exists only for ``beta < theta_E``; NaN otherwise)."""
    theta_e = np.asarray(theta_e, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    return beta + theta_e, np.where(beta < theta_e, beta - theta_e, np.nan)


def inner_image_radius(theta_e, beta) -> np.ndarray:
    """Distance (arcsec) of the inner (counter) image from the lens centre, ``theta_E - |beta|``
    for ``|beta| < theta_E``, NaN otherwise.

    Exact for an SIS; for an SIE with shear it is the SIS value of the same product-averaged
    theta_E (errors of order e and gamma times theta_E), adequate for "how close to the core".
    """
    theta_e = np.asarray(theta_e, dtype=np.float64)
    beta = np.abs(np.asarray(beta, dtype=np.float64))
    return np.where(beta < theta_e, theta_e - beta, np.nan)


def sis_magnification(theta_e, beta) -> np.ndarray:
    """Total point-source magnification of an SIS: ``2 theta_E / beta`` for ``beta < theta_E``
    (two images), ``1 + theta_E / beta`` otherwise (one image)."""
    theta_e = np.asarray(theta_e, dtype=np.float64)
    beta = np.abs(np.asarray(beta, dtype=np.float64))
    return np.where(beta < theta_e, 2.0 * theta_e / beta, 1.0 + theta_e / beta)
