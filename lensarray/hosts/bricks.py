"""The Legacy Surveys brick grid: rows of 0.25 deg in Dec, ~0.25 x 0.25 deg bricks.

Row centres sit at multiples of 0.25 deg in Dec; a row at Dec d holds
``round(360 cos(d) / 0.25)`` bricks of equal RA width starting at RA 0. Names are
``RRRR{p|m}DDD`` with RRRR = int(10 x RA centre) and DDD = int(10 x |Dec centre|). Checked
against real DR10 brick names (tests): the Dec row is exact; the RA brick agrees to within one
brick at high |Dec| where legacypipe's column count differs slightly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["brickname_of", "brick_centre"]

BRICK_SIZE = 0.25  # deg


def brick_centre(ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of the centre of the brick containing each position."""
    ra = np.mod(np.asarray(ra, dtype=np.float64), 360.0)
    dec = np.asarray(dec, dtype=np.float64)
    dec_c = np.clip(np.round(dec / BRICK_SIZE) * BRICK_SIZE, -90.0, 90.0)
    ncol = np.maximum(1, np.round(360.0 * np.cos(np.radians(dec_c)) / BRICK_SIZE)).astype(np.int64)
    width = 360.0 / ncol
    col = np.minimum((ra / width).astype(np.int64), ncol - 1)
    return (col + 0.5) * width, dec_c


def brickname_of(ra, dec) -> np.ndarray:
    """DR10-style brick names (``<U8``) of positions (deg)."""
    ra_c, dec_c = brick_centre(ra, dec)
    ra_part = np.char.zfill(np.floor(ra_c * 10 + 1e-9).astype(np.int64).astype(str), 4)
    sign = np.where(dec_c >= 0, "p", "m")
    dec_part = np.char.zfill(np.floor(np.abs(dec_c) * 10 + 1e-9).astype(np.int64).astype(str), 3)
    return np.char.add(np.char.add(ra_part, sign), dec_part).astype("<U8")
