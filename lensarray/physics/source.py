"""Elliptical Sersic source, lenstronomy SERSIC_ELLIPSE convention.

``I(R) = amp * exp(-b_n * ((R / R_sersic)^(1/n) - 1))`` with the product-average radius
``R = sqrt(q x'^2 + y'^2 / q)`` in the frame rotated by ``phi``; ``e1, e2 -> q, phi`` as
``e = (1 - q)/(1 + q)``, ``phi = atan2(e2, e1)/2``. ``amp`` is the surface brightness at
``R_sersic`` (flux per arcsec^2 when fluxes are per arcsec^2); angles in arcsec.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gamma

__all__ = ["sersic_b", "ellipticity_to_q_phi", "sersic_ellipse", "sersic_total_flux"]


def sersic_b(n_sersic) -> np.ndarray:
    """``b_n = 1.9992 n - 0.3271`` (lenstronomy's approximation; half light inside R_sersic)."""
    return 1.9992 * np.asarray(n_sersic, dtype=np.float64) - 0.3271


def ellipticity_to_q_phi(e1, e2) -> tuple[np.ndarray, np.ndarray]:
    """Axis ratio ``q`` and position angle ``phi`` (radians, from +x towards +y) of (e1, e2)."""
    e1 = np.asarray(e1, dtype=np.float64)
    e2 = np.asarray(e2, dtype=np.float64)
    phi = np.arctan2(e2, e1) / 2.0
    c = np.minimum(np.hypot(e1, e2), 0.9999)
    return (1.0 - c) / (1.0 + c), phi


def sersic_ellipse(x, y, amp, r_sersic, n_sersic, e1, e2, center_x=0.0, center_y=0.0) -> np.ndarray:
    """Surface brightness of an elliptical Sersic profile at (x, y) (arcsec); broadcasting.

    Parameters are arrays broadcastable against ``x``/``y`` (for a batch, give them shape
    ``(n, 1, 1)`` against grids ``(n, ny, nx)``).
    """
    q, phi = ellipticity_to_q_phi(e1, e2)
    dx = np.asarray(x) - center_x
    dy = np.asarray(y) - center_y
    c, s = np.cos(phi), np.sin(phi)
    xr = c * dx + s * dy
    yr = -s * dx + c * dy
    r = np.sqrt(q * xr * xr + yr * yr / q)
    r = np.maximum(r, 1e-5)  # lenstronomy's smoothing: finite cusp for n > 1
    bn = sersic_b(n_sersic)
    return amp * np.exp(-bn * ((r / r_sersic) ** (1.0 / np.asarray(n_sersic, dtype=np.float64)) - 1.0))


def sersic_total_flux(amp, r_sersic, n_sersic) -> np.ndarray:
    """Total flux ``2 pi n R^2 amp e^{b_n} b_n^{-2n} Gamma(2n)`` (independent of q)."""
    n = np.asarray(n_sersic, dtype=np.float64)
    bn = sersic_b(n)
    return (
        2.0
        * np.pi
        * n
        * np.asarray(r_sersic, dtype=np.float64) ** 2
        * amp
        * np.exp(bn)
        * bn ** (-2.0 * n)
        * gamma(2.0 * n)
    )
