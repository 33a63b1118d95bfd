"""Core-mask policies applied to the arc at injection.

``none`` leaves the arc alone; ``hard`` zeroes it inside ``r < radius``; ``taper`` multiplies it
by ``0.5 (1 + tanh((r - radius) / width))``. ``r`` is the distance in pixels of a pixel centre
from the stamp origin, the centre of pixel (size//2, size//2). The policy trades realism (a
real lens does have light in the core) for removing the "bright core" shortcut.
"""

from __future__ import annotations

import numpy as np

from .geometry import radius_grid

__all__ = ["POLICIES", "radius_map", "core_mask_weights", "apply_core_mask", "parse_core_mask"]

POLICIES = ("none", "hard", "taper")

#: The stamp-origin radius grid (pixels); an alias of :func:`lensarray.geometry.radius_grid`.
radius_map = radius_grid


def core_mask_weights(size: int, policy: str, radius: float = 5.0, width: float = 1.0) -> np.ndarray:
    """Multiplicative weights ``(size, size)`` float32 of a core-mask policy.

    Parameters
    ----------
    size
        Stamp side, pixels.
    policy
        ``"none"``, ``"hard"`` or ``"taper"``.
    radius
        Mask radius, pixels (> 0 for hard/taper).
    width
        tanh width of ``taper``, pixels (> 0).
    """
    if policy not in POLICIES:
        raise ValueError(f"core-mask policy {policy!r}: allowed one of {', '.join(POLICIES)}")
    if policy == "none":
        return np.ones((size, size), dtype=np.float32)
    if not radius > 0:
        raise ValueError(f"core-mask radius {radius}: allowed > 0 pixels")
    r = radius_grid(size)
    if policy == "hard":
        return (r >= radius).astype(np.float32)
    if not width > 0:
        raise ValueError(f"core-mask width {width}: allowed > 0 pixels")
    return (0.5 * (1.0 + np.tanh((r - radius) / width))).astype(np.float32)


def apply_core_mask(arcs: np.ndarray, policy: str, radius: float = 5.0, width: float = 1.0) -> np.ndarray:
    """``arcs (..., size, size)`` times the policy's weights (a new array; ``none`` returns arcs)."""
    if policy == "none":
        return arcs
    w = core_mask_weights(arcs.shape[-1], policy, radius, width)
    return arcs * w


def parse_core_mask(text: str) -> tuple[str, float, float]:
    """Parse ``none`` | ``hard:R`` | ``taper:R:W`` (pixels) into ``(policy, radius, width)``."""
    parts = str(text).strip().split(":")
    policy = parts[0]
    try:
        nums = [float(p) for p in parts[1:]]
    except ValueError:
        raise ValueError(f"{text!r}: allowed none, hard:R or taper:R:W with R, W numbers in pixels") from None
    if policy == "none" and not nums:
        return "none", 5.0, 1.0
    if policy == "hard" and len(nums) == 1 and 0 < nums[0] <= 256:
        return "hard", nums[0], 1.0
    if policy == "taper" and len(nums) == 2 and 0 < nums[0] <= 256 and 0 < nums[1] <= 64:
        return "taper", nums[0], nums[1]
    raise ValueError(f"{text!r}: allowed none, hard:R (0 < R <= 256) or taper:R:W (0 < W <= 64), pixels")
