"""Stamp geometry: the one pixel-radius grid every module uses.

DESIGN's convention: the stamp origin is the centre of pixel (row, col) = (size//2, size//2);
pixel (i, j) has its centre at x = j - size//2, y = i - size//2 pixels. Build, masking, the
diagnostics, the baseline finder and the accessor all take their radii from here, so a change of
convention (or a bug) cannot make two of them disagree about which pixels are "the core".
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["radius_grid", "offsets", "core_pixels", "central_slice", "central_side", "core_square_side"]


@lru_cache(maxsize=64)
def _offsets(size: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(size, dtype=np.float64) - size // 2
    dy, dx = np.meshgrid(idx, idx, indexing="ij")
    dy.setflags(write=False)
    dx.setflags(write=False)
    return dy, dx


def offsets(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(dy, dx)``: offsets (pixels) of every pixel centre from the stamp origin, ``(size, size)`` each.

    Cached and read-only; ``dx`` grows along columns (+x), ``dy`` along rows (+y).
    """
    return _offsets(int(size))


@lru_cache(maxsize=64)
def _radius(size: int) -> np.ndarray:
    dy, dx = _offsets(size)
    r = np.hypot(dy, dx)
    r.setflags(write=False)
    return r


def radius_grid(size: int, center: tuple[ArrayLike, ArrayLike] | None = None) -> np.ndarray:
    """Distance (pixels) of every pixel centre from a centre, ``(size, size)`` float64.

    Parameters
    ----------
    size
        Stamp side, pixels.
    center
        ``(x, y)`` of the centre relative to the stamp origin, pixels; ``None`` (default) is the
        stamp origin itself, whose grid is cached and read-only. ``x`` and ``y`` may be ``(n,)``
        arrays (one centre per pair, e.g. the lens centres): the result is then ``(n, size, size)``.
    """
    if center is None:
        return _radius(int(size))
    # the offsets are separable (dy varies along rows only, dx along columns only): subtracting
    # the centres from one row and one column and broadcasting in hypot gives the same values
    # as the full grids with one (n, size, size) pass instead of three
    idx = _offsets(int(size))[1][0]
    cx = np.asarray(center[0], dtype=np.float64)[..., None, None]
    cy = np.asarray(center[1], dtype=np.float64)[..., None, None]
    return np.hypot(idx[:, None] - cy, idx[None, :] - cx)


@lru_cache(maxsize=64)
def _core(size: int, radius: float) -> np.ndarray:
    sel = _radius(size) < radius
    sel.setflags(write=False)
    return sel


def core_pixels(size: int, radius: float) -> np.ndarray:
    """Boolean ``(size, size)`` mask of the pixels whose centre lies at r < ``radius`` pixels (cached)."""
    return _core(int(size), float(radius))


def central_side(size: int, radius: float, box: int = 0, edge_radius: float = 0.0) -> int:
    """Odd side of the central square that holds every pixel with r < ``radius``, the central
    ``box x box`` box, the ring between them and the 1-px annuli the mask-edge probe reads around
    r = ``max(radius, edge_radius)`` (two pixels beyond it), clipped to the stamp:
    ``2 * max(ceil(max(radius, box corner radius)), ceil(max(radius, edge_radius)) + 2) + 1``, the
    corner radius being ``box / sqrt(2)`` (7.07 px for the published 10x10 box, whose pixel
    centres span -5 .. +4 about the origin). All in pixels."""
    half = max(
        int(np.ceil(max(float(radius), box / np.sqrt(2.0)))), int(np.ceil(max(float(radius), float(edge_radius)))) + 2
    )
    return min(2 * half + 1, size if size % 2 else size - 1)


def core_square_side(size: int, radius: float, box: int = 0) -> int:
    """Odd side of the smallest square about the stamp origin that holds every pixel with
    r < ``radius`` and the central ``box x box`` box (:func:`central_slice`; an even box spans
    ``-box/2 .. box/2 - 1``): ``2 * max(ceil(radius) - 1, box // 2) + 1``, clipped to the stamp
    (11 for the published 10x10 box and r < 5). The pixels the core LR's disc, box and ring read;
    all in pixels."""
    half = max(int(np.ceil(float(radius))) - 1, int(box) // 2, 0)
    return min(2 * half + 1, size if size % 2 else size - 1)


def central_slice(size: int, side: int) -> slice:
    """Rows (or columns) of the ``side``-pixel square centred on the stamp origin.

    An odd side is symmetric about pixel size//2; an even one spans
    ``size//2 - side//2 .. size//2 + side//2 - 1`` (the published 10x10 core box).
    """
    lo = size // 2 - side // 2
    return slice(lo, lo + side)
