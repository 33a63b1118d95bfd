"""The Legacy Surveys brick grid (DR10 = desiutil.brick.Bricks with 0.25 deg bricks).

Rows are centred at multiples of 0.25 deg in Dec (row = int((Dec + 90.125) / 0.25)); a row holds
an even number of equal-width bricks, ``2 ceil(1440 cos(max(0, |Dec_c| - 0.125)) / 2)`` (the
row's widest edge, nearer the equator, sets the count), starting at RA 0; the polar rows are one
brick. Names are ``RRRR{p|m}DDD`` = the centre's RA and |Dec| in units of 0.1 deg (rounded to
1e-4 deg first, as desiutil does, then truncated). Checked against real DR10 brick names (tests).
"""

from __future__ import annotations

import numpy as np

__all__ = ["brickname_of", "brick_centre"]

BRICK_SIZE = 0.25  # deg


def brick_centre(ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of the centre of the brick containing each position (deg)."""
    ra = np.mod(np.asarray(ra, dtype=np.float64), 360.0)
    dec = np.asarray(dec, dtype=np.float64)
    row = np.clip(((dec + 90.0 + BRICK_SIZE / 2) / BRICK_SIZE).astype(np.int64), 0, int(180 / BRICK_SIZE))
    dec_c = np.minimum(row * BRICK_SIZE - 90.0, 90.0)
    dec_lo = np.maximum(0.0, np.abs(dec_c) - BRICK_SIZE / 2)
    ncol = (np.ceil(360.0 / BRICK_SIZE * np.cos(np.radians(dec_lo)) / 2) * 2).astype(np.int64)
    ncol = np.where(np.abs(dec_c) >= 90.0, 1, ncol)
    col = np.minimum((ra / 360.0 * ncol).astype(np.int64), ncol - 1)
    return np.where(ncol == 1, 180.0, (col + 0.5) * 360.0 / ncol), dec_c


def brickname_of(ra, dec) -> np.ndarray:
    """DR10-style brick names (``<U8``) of positions (deg)."""
    ra_c, dec_c = brick_centre(ra, dec)
    ra_part = np.char.zfill(np.floor(np.round(ra_c * 1e4) / 1e3).astype(np.int64).astype(str), 4)
    sign = np.where(dec_c >= 0, "p", "m")
    dec_part = np.char.zfill(np.floor(np.round(np.abs(dec_c) * 1e4) / 1e3).astype(np.int64).astype(str), 3)
    return np.char.add(np.char.add(ra_part, sign), dec_part).astype("<U8")
