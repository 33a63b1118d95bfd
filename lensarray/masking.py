"""Core-mask policies applied to the arc at injection.

``none`` leaves the arc alone; ``hard`` zeroes it inside ``r < radius``; ``taper`` multiplies it
by ``0.5 (1 + tanh((r - radius) / width))``. ``r`` is the distance in pixels of a pixel centre
from the stamp origin, the centre of pixel (size//2, size//2).

Where the weights go (``core_mask.apply_to``):

- ``arc``: the stored arc is ``arc * w``; the lens loses its core light (realism traded for
  removing the "bright core" shortcut) and a hard mask leaves a sharp circular edge.
- ``control`` (core-matched control): the stored arc is the whole physical arc and the control
  receives the arc's core light, ``control = host + arc * (1 - w)``: core pixels of lens and
  control are identical, the lens keeps its physical arc with no artificial edge.

:func:`control_arc_weights` is the one place that says what light a control carries; the
accessor ``stamps()``, the training loader and the diagnostics all call :func:`control_stamp`.
"""

from __future__ import annotations

import numpy as np

from .geometry import radius_grid

__all__ = [
    "POLICIES",
    "APPLY_TO",
    "radius_map",
    "core_mask_weights",
    "apply_core_mask",
    "parse_core_mask",
    "arc_weights",
    "control_arc_weights",
    "control_weights_of",
    "control_stamp",
    "policy_attrs",
    "core_mask_policy_attr",
]

POLICIES = ("none", "hard", "taper")
#: Where the core-mask weights act: on the stored arc, or (core-matched) on the control.
APPLY_TO = ("arc", "control")

#: The radius grid (pixels; per-pair centres allowed); an alias of :func:`lensarray.geometry.radius_grid`.
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


def arc_weights(size: int, core_mask) -> np.ndarray | None:
    """Weights ``(size, size)`` the stored arc is multiplied by (``None``: the arc is stored whole).

    ``core_mask`` is a :class:`lensarray.config.CoreMaskSection` (policy, radius, width, apply_to).
    """
    if core_mask.policy == "none" or core_mask.apply_to != "arc":
        return None
    return core_mask_weights(size, core_mask.policy, core_mask.radius, core_mask.width)


def control_arc_weights(
    size: int, policy: str, radius: float = 5.0, width: float = 1.0, apply_to: str = "arc"
) -> np.ndarray | None:
    """``w_core (size, size)`` with ``control = host + arc * w_core``; ``None``: the control is the host.

    Only the core-matched policy (``apply_to = "control"``) gives the control light: the part of
    the arc the policy's weights would remove, ``1 - w``, so lens and control agree in the core.
    Arguments as :func:`core_mask_weights` (pixels).
    """
    if apply_to not in APPLY_TO:
        raise ValueError(f"core_mask.apply_to = {apply_to!r}: allowed one of {', '.join(APPLY_TO)}")
    if policy == "none" or apply_to != "control":
        return None
    return (1.0 - core_mask_weights(size, policy, radius, width)).astype(np.float32)


def control_weights_of(attrs: dict, size: int) -> np.ndarray | None:
    """:func:`control_arc_weights` of a cube, from the configuration recorded in its attrs."""
    import json

    raw = attrs.get("config")
    if not raw:
        return None
    cm = (json.loads(raw) if isinstance(raw, str) else dict(raw)).get("core_mask", {})
    return control_arc_weights(
        size,
        cm.get("policy", "none"),
        float(cm.get("radius", 5.0)),
        float(cm.get("width", 1.0)),
        cm.get("apply_to", "arc"),
    )


def control_stamp(host, arc, w_core):
    """The control stamp: ``host`` when ``w_core`` is None, else ``host + arc * w_core``.

    Works on numpy, dask and xarray alike (``w_core`` broadcasts over the last two axes).
    """
    if w_core is None:
        return host
    return host + arc * w_core


def core_mask_policy_attr(policy: str, radius: float, width: float, apply_to: str = "arc") -> str:
    """The ``core_mask_policy`` attr of a cube (JSON; the one format, for builds and the accessor).

    Parameters
    ----------
    policy
        ``"none"``, ``"hard"`` or ``"taper"``.
    radius, width
        Mask radius and taper width, pixels.
    apply_to
        ``"arc"`` or ``"control"`` (see the module docstring).
    """
    import json

    return json.dumps({"policy": policy, "radius_px": float(radius), "width_px": float(width), "apply_to": apply_to})


def policy_attrs(cfg) -> dict:
    """Dataset attrs recording every arc/label policy of a build (strings: zarr-safe, readable)."""
    import json

    cm, b = cfg.core_mask, cfg.brightness
    if cm.policy == "none":
        control = "host"
    elif cm.apply_to == "control":
        control = f"host + arc * (1 - w), w = core_mask {cm.policy} weights (core-matched control)"
    else:
        control = "host"
    return {
        "core_mask_policy": core_mask_policy_attr(cm.policy, cm.radius, cm.width, cm.apply_to),
        "control_stamp": control,
        "arc_snr_calibration": json.dumps(
            {
                "definition": b.snr_definition,
                "applies_to": b.snr_calibrate,
                "floor": b.snr_floor,
                "floor_action": b.snr_floor_action,
                "floor_redraws": b.snr_floor_redraws,
            }
        ),
        "arc_snr_definition": (
            f"matched filter sqrt(sum(d**2 * invvar)) over the {b.snr_band} band, "
            "d = lens - control (the stored arc after the core-mask policy)"
        ),
        "arc_snr_aperture_definition": (
            f"sum(d) / sqrt(sum(1 / invvar)) over the {b.snr_band}-band pixels with "
            f"|r - theta_E| < {b.aperture_halfwidth} arcsec, r from the lens centre, invvar > 0"
        ),
    }
