"""Inner (counter) image statistics: how often the second image lands in the core.

For a singular isothermal sphere a source at |beta| < theta_E has a counter image at radius
theta_E - |beta| on the opposite side; it is faint but sits where the host is brightest. The
stored ``inner_image_r`` (analytic, pixels) is used when present and finite for some pairs;
otherwise it is recomputed here from theta_E and the source offset (SIS).
"""

from __future__ import annotations

import numpy as np

from ..physics.lens import inner_image_radius as sis_inner_image_radius
from ..statistics import THETA_E_EDGES
from .core_flux import binned_quantiles

__all__ = ["sis_inner_image_radius", "inner_image_summary"]


def inner_image_summary(inner_r_px: np.ndarray, theta_e: np.ndarray, theta_e_edges=None) -> dict:
    """Fraction of pairs with an inner image, its radius per theta_E bin, fractions inside 3 and 5 px.

    Parameters
    ----------
    inner_r_px
        ``(n,)`` counter-image radius in pixels, NaN when there is none.
    theta_e
        ``(n,)`` arcsec.
    """
    r = np.asarray(inner_r_px, float)
    has = np.isfinite(r)
    n = max(r.size, 1)
    return {
        "n_pairs": int(r.size),
        "frac_with_inner_image": float(has.mean()) if r.size else None,
        "frac_inner_lt_3px": float(np.sum(has & (r < 3)) / n),
        "frac_inner_lt_5px": float(np.sum(has & (r < 5)) / n),
        "frac_of_inner_lt_5px": float(np.mean(r[has] < 5)) if has.any() else None,
        "median_radius_px": float(np.median(r[has])) if has.any() else None,
        "by_theta_e": binned_quantiles(r, theta_e, THETA_E_EDGES if theta_e_edges is None else theta_e_edges),
    }
