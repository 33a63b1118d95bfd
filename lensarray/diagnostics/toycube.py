"""Small in-memory cubes with known answers, for tests and examples of the diagnostics.

Not physics: hosts are noisy exponential galaxies, "arcs" are either a partial Gaussian ring at
the Einstein radius (outside the core box: no core shortcut), a Gaussian blob at the centre (a
pure core shortcut), a partial ring confined to 5 <= r < 7 px (``ringonly``: light only in the
ring between the r < 5 px disc and the 10x10 box), a broad seeing-like blob (``blob``, sigma 3 px,
in and around the core; with ``hard_mask`` a hard-masked compact arc), or nothing (null). Optional planted defects let tests check that each
audit catches what it claims to catch.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..config import RunConfig
from ..conventions import reference_band_index
from ..cube import template
from ..derived import arc_statistics, inner_image_radius_px, matched_filter_snr
from ..geometry import offsets, radius_grid
from ..masking import core_mask_policy_attr

__all__ = ["toy_cube", "ARC_KINDS", "LEAKS"]

ARC_KINDS = ("ring", "core", "null", "ringonly", "blob")
#: ``coordinate``: a per-sample variable ``exposure_id`` (pair, role) equal to the role;
#: ``negatives_invvar``: half the pairs are hard negatives (no feature) with 2x deeper invvar;
#: ``nodata``: arcs carry flux into invvar == 0 pixels (lens stamps only);
#: ``nan``: some arcs contain NaN.
LEAKS = ("coordinate", "negatives_invvar", "nodata", "nan")


def toy_cube(
    n_pairs: int = 256,
    *,
    kind: str = "ring",
    size: int = 64,
    bands=("g", "r", "z"),
    seed: int = 0,
    chunk_pairs: int = 32,
    leak: str | None = None,
    snr_range: tuple[float, float] = (10.0, 40.0),
    hard_mask: float | None = None,
) -> xr.Dataset:
    """A schema-complete cube held in numpy (wrapped as dask by ``chunk()``).

    Parameters
    ----------
    n_pairs, size, bands
        Cube shape.
    kind
        ``ring`` | ``core`` | ``null`` (see module doc).
    seed
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    leak
        One of :data:`LEAKS` or ``None``.
    snr_range
        Target matched-filter arc S/N (r band) drawn uniformly in this range (before ``hard_mask``).
    hard_mask
        Zero the arcs at r < this radius (pixels), as the ``hard`` core-mask policy does.
    """
    if kind not in ARC_KINDS:
        raise ValueError(f"kind = {kind!r}: allowed one of {', '.join(ARC_KINDS)}")
    if leak is not None and leak not in LEAKS:
        raise ValueError(f"leak = {leak!r}: allowed one of {', '.join(LEAKS)} or None")
    rng = np.random.default_rng(seed)
    nb, n, ps = len(bands), n_pairs, 0.262
    over = {"run.n_pairs": n, "run.size": size, "run.bands": list(bands), "run.null": kind == "null"}
    if hard_mask is not None:
        over.update({"core_mask.policy": "hard", "core_mask.radius": float(hard_mask)})
    cfg = RunConfig().replace(**over)
    dy, dx = offsets(size)
    rad = radius_grid(size)
    phi = np.arctan2(dy, dx)

    theta_e = rng.uniform(2.3, 3.0, n) if kind != "core" else rng.uniform(0.5, 3.0, n)
    psf = rng.uniform(1.1, 1.6, (n, nb))
    host_mag = rng.uniform(18.5, 20.5, (n, 1)) + np.array([1.5, 0.0, -0.8])[:nb]
    host_flux = 10 ** ((22.5 - host_mag) / 2.5)
    reff_px = rng.uniform(2.0, 5.0, n)
    prof = np.exp(-rad[None] / (reff_px[:, None, None] / 1.678))
    prof /= prof.sum(axis=(1, 2), keepdims=True)
    sigma_pix = np.array([0.004, 0.006, 0.012])[:nb]
    invvar = np.broadcast_to((1.0 / sigma_pix**2)[None, :, None, None], (n, nb, size, size)).copy()
    host = (
        host_flux[:, :, None, None] * prof[:, None]
        + rng.normal(size=(n, nb, size, size)) * sigma_pix[None, :, None, None]
    )
    maskbits = np.zeros((n, size, size), np.int32)
    hit = rng.random(n) < 0.1
    maskbits[hit, :4, :] = 1 << 1

    if kind == "ring":
        r0 = theta_e / ps
        phase = rng.uniform(-np.pi, np.pi, n)
        shape = (
            np.exp(-0.5 * ((rad[None] - r0[:, None, None]) / 1.2) ** 2)
            * (1 + np.cos(phi[None] - phase[:, None, None]))
            / 2
        )
    elif kind == "core":
        shape = np.exp(-0.5 * (rad[None] / 1.5) ** 2) * np.ones((n, 1, 1))
    elif kind == "ringonly":
        phase = rng.uniform(-np.pi, np.pi, n)
        # the published 10x10 box spans offsets -5 .. 4 (rows size//2 - 5 .. size//2 + 4)
        in_ring = (rad >= 5.0) & (dy >= -5) & (dy <= 4) & (dx >= -5) & (dx <= 4)
        shape = np.where(in_ring[None], (1 + np.cos(phi[None] - phase[:, None, None])) / 2 + 0.2, 0.0)
    elif kind == "blob":
        shape = np.exp(-0.5 * (rad[None] / 3.0) ** 2) * np.ones((n, 1, 1))
    else:
        shape = np.zeros((n, size, size))
    shape = shape / np.maximum(shape.sum(axis=(1, 2), keepdims=True), 1e-30)
    colour = np.array([0.8, 1.0, 1.1])[:nb]
    unit = shape[:, None] * colour[None, :, None, None]
    r_idx = reference_band_index(bands)
    target = rng.uniform(*snr_range, n)
    unit_snr = matched_filter_snr(unit[:, r_idx], invvar[:, r_idx])
    scale = np.where(unit_snr > 0, target / np.where(unit_snr > 0, unit_snr, 1), 0.0)
    arc = unit * scale[:, None, None, None]
    if hard_mask is not None:
        arc = arc * (rad >= hard_mask)[None, None]
    hard_negative = np.zeros(n, np.int8)

    if leak == "negatives_invvar":
        negs = rng.random(n) < 0.5
        hard_negative[negs] = 1
        arc[negs] = 0.0
        invvar[negs] *= 2.0
    elif leak == "nodata":
        invvar[:, :, :, :3] = 0.0
        host[:, :, :, :3] = 0.0
        arc[:, :, :, :3] += 0.05
    elif leak == "nan":
        arc[rng.random(n) < 0.2, :, 0, 0] = np.nan

    ds = template(
        n,
        list(bands),
        size,
        attrs={
            "config": cfg.to_json(),
            "pixel_scale": ps,
            "zero_point": 22.5,
            "unit": "nanomaggy",
            "core_mask_policy": core_mask_policy_attr(
                cfg.core_mask.policy, cfg.core_mask.radius, cfg.core_mask.width, cfg.core_mask.apply_to
            ),
        },
        chunk_pairs=chunk_pairs,
    )
    ch = {"pair": chunk_pairs}
    vals = {
        "host": host.astype(np.float32),
        "arc": arc.astype(np.float32),
        "invvar": invvar.astype(np.float32),
        "maskbits": maskbits,
        "theta_e": theta_e.astype(np.float32),
        "psf_fwhm": psf.astype(np.float32),
        "host_mag": host_mag.astype(np.float32) * np.ones((1, nb), np.float32),
        "src_reff": rng.uniform(0.1, 0.6, n).astype(np.float32),
        "src_x": rng.uniform(-0.5, 0.5, n).astype(np.float32),
        "src_y": rng.uniform(-0.5, 0.5, n).astype(np.float32),
        "hard_negative": hard_negative,
        "split": rng.integers(0, 3, n).astype(np.int8),
        "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-30, 30, n),
        "psfdepth": np.full((n, nb), 24.5, np.float32),
        "host_reff": (reff_px * ps).astype(np.float32),
        "host_id": np.arange(n, dtype=np.int64),
    }
    # derived exactly as the build derives them (from the stored float32 arc)
    vals.update(
        arc_statistics(vals["arc"], vals["invvar"], core_radius=cfg.diagnostics.core_radius, snr_band_index=r_idx)
    )
    vals["inner_image_r"] = inner_image_radius_px(vals["theta_e"], vals["src_x"], vals["src_y"], pixel_scale=ps).astype(
        np.float32
    )
    for k, v in vals.items():
        ds[k] = (ds[k].dims, v, ds[k].attrs)
    if leak == "coordinate":
        ds["exposure_id"] = (("pair", "role"), np.tile(np.array([[7, 3]], np.int32), (n, 1)))
        ds = ds.assign_coords(role=["lens", "control"])
    return ds.chunk(ch)
