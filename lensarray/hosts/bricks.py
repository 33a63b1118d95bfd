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

#: Brick rows from the south pole (row 0) to the north pole (row 720).
_N_ROWS = int(180 / BRICK_SIZE) + 1


def _row_grid() -> tuple[np.ndarray, np.ndarray]:
    """Centre Dec (deg) and number of bricks of every row: what each position's row looks up
    (the same arithmetic on 721 rows instead of on every position)."""
    row = np.arange(_N_ROWS, dtype=np.int64)
    dec_c = np.minimum(row * BRICK_SIZE - 90.0, 90.0)
    dec_lo = np.maximum(0.0, np.abs(dec_c) - BRICK_SIZE / 2)
    ncol = (np.ceil(360.0 / BRICK_SIZE * np.cos(np.radians(dec_lo)) / 2) * 2).astype(np.int64)
    return dec_c, np.where(np.abs(dec_c) >= 90.0, 1, ncol)


_ROW_DEC, _ROW_NCOL = _row_grid()


def _zero_padded_code_points(width: int) -> np.ndarray:
    """``(10**width, width)`` code points of ``0 .. 10**width - 1`` written with ``width`` digits."""
    value = np.arange(10**width, dtype=np.int64)[:, None]
    return (value // 10 ** np.arange(width - 1, -1, -1) % 10 + ord("0")).astype(np.uint32)


#: Digits of the name's RA (4) and |Dec| (3) parts, by value.
_RA_DIGITS, _DEC_DIGITS = _zero_padded_code_points(4), _zero_padded_code_points(3)


def brick_centre(ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of the centre of the brick containing each position (deg)."""
    ra = np.mod(np.asarray(ra, dtype=np.float64), 360.0)
    dec = np.asarray(dec, dtype=np.float64)
    row = np.clip(((dec + 90.0 + BRICK_SIZE / 2) / BRICK_SIZE).astype(np.int64), 0, _N_ROWS - 1)
    dec_c, ncol = _ROW_DEC[row], _ROW_NCOL[row]
    col = np.minimum((ra / 360.0 * ncol).astype(np.int64), ncol - 1)
    return np.where(ncol == 1, 180.0, (col + 0.5) * 360.0 / ncol), dec_c


def _brick_codes(ra_c: np.ndarray, dec_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The name's integers: RA and |Dec| of the centre in 0.1 deg (rounded to 1e-4 deg, then
    truncated, as desiutil does): ``0 <= ra < 3600``, ``0 <= dec <= 900``."""
    ra_part = np.floor(np.round(ra_c * 1e4) / 1e3).astype(np.int64)
    dec_part = np.floor(np.round(np.abs(dec_c) * 1e4) / 1e3).astype(np.int64)
    return ra_part, dec_part


def brickname_of(ra, dec) -> np.ndarray:
    """DR10-style brick names (``<U8``, the shape of the positions) of positions (deg)."""
    ra_c, dec_c = brick_centre(ra, dec)
    shape = np.shape(ra_c)
    ra_part, dec_part = (p.reshape(-1) for p in _brick_codes(ra_c, dec_c))
    # the 8 code points of each name written straight into a <U8 buffer (no per-name strings);
    # the parts never exceed their widths (4 and 3 digits), so this is zfill exactly
    code = np.empty((ra_part.size, 8), dtype=np.uint32)
    code[:, :4] = _RA_DIGITS[ra_part]
    code[:, 4] = np.where(dec_c.reshape(-1) >= 0, ord("p"), ord("m"))
    code[:, 5:] = _DEC_DIGITS[dec_part]
    return code.view("<U8").reshape(shape)
