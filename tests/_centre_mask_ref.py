"""Test reference for :func:`lensarray.diagnostics.ablation.centre_mask`: the implementation that the
numba version replaced, one numpy ``Generator`` per stamp and whole-batch array operations."""

from __future__ import annotations

import numpy as np

from lensarray.diagnostics.ablation import _uniform_bounds, mask_radii
from lensarray.geometry import central_slice, radius_grid


def centre_mask(
    stamps: np.ndarray,
    *,
    r_mask: float | tuple[float, float] = 5.0,
    mode: str = "fixed",
    psf_fwhm: np.ndarray | None = None,
    pixel_scale: float = 0.262,
    seed: int = 0,
    sample_ids: np.ndarray | None = None,
    annulus: tuple[float, float] | None = None,
    return_radii: bool = False,
    central_side: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The previous implementation (one numpy Generator per stamp), docstring in lensarray."""
    arr = np.asarray(stamps)
    squeeze = arr.ndim == 3
    if squeeze:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(
            f"stamps has shape {np.shape(stamps)}: allowed (n, band, y, x) or (band, y, x) with square stamps"
        )
    n, nb, size, _ = arr.shape
    if central_side is not None and not (0 < int(central_side) <= size):
        raise ValueError(f"central_side = {central_side!r}: allowed 1 .. {size} pixels")
    r_in, r_out = annulus if annulus is not None else (max(size // 2 - 12, 0), size // 2 - 2)
    rad = radius_grid(size).ravel()
    donor_flat = np.flatnonzero((rad >= r_in) & (rad < r_out))
    if donor_flat.size == 0:
        raise ValueError(f"annulus = ({r_in}, {r_out}): allowed radii that contain pixels of a {size}-pixel stamp")

    if sample_ids is not None:
        ids = np.asarray(sample_ids, dtype=np.int64).ravel()
        if ids.size != n:
            raise ValueError(f"sample_ids has {ids.size} entries: allowed one per stamp ({n})")
        gens = [np.random.default_rng(np.random.SeedSequence([int(seed), int(i)])) for i in ids]
    else:
        batch_rng = np.random.default_rng(np.random.SeedSequence([int(seed)]))
        gens = None

    if mode == "uniform" and gens is not None:
        lo, hi = _uniform_bounds(r_mask)
        radii = np.repeat(np.array([g.uniform(lo, hi) for g in gens]).reshape(n, 1), nb, axis=1)
    else:
        radii = mask_radii(
            n,
            nb,
            r_mask=r_mask,
            mode=mode,
            psf_fwhm=psf_fwhm,
            pixel_scale=pixel_scale,
            rng=None if gens is not None else batch_rng,
        )
    # candidates in order of radius: a stamp's first k pixels are exactly those it may mask
    order = np.argsort(rad, kind="stable")
    rad_sorted = rad[order]
    per_stamp_max = radii.max(axis=1) if nb else np.zeros(n)
    k_stamp = np.searchsorted(rad_sorted, per_stamp_max, side="left")
    k = int(k_stamp.max()) if n else 0
    if central_side is not None:
        sl = central_slice(size, int(central_side))
        out = arr[..., sl, sl].copy()
    else:
        out = arr.copy()

    if k > 0:
        target_flat = order[:k]
        if gens is None:
            pick = batch_rng.integers(0, donor_flat.size, size=(n, nb, k))
        else:
            pick = np.zeros((n, nb, k), np.int64)
            for i, g in enumerate(gens):
                pick[i, :, : k_stamp[i]] = g.integers(0, donor_flat.size, size=(nb, int(k_stamp[i])))
        flat = arr.reshape(n, nb, size * size)
        fill = np.take_along_axis(flat, donor_flat[pick], axis=2)
        bad = ~np.isfinite(fill)
        if bad.any():
            # rare (NaN in the annulus): redraw those stamp-bands among finite donors only
            for i, b in zip(*np.nonzero(bad.any(axis=2)), strict=True):
                donors = flat[i, b, donor_flat]
                good = donors[np.isfinite(donors)]
                g = gens[i] if gens is not None else batch_rng
                kk = k if gens is None else int(k_stamp[i])
                fill[i, b, :kk] = g.choice(good, size=kk) if good.size else 0.0
        inside = rad[target_flat][None, None, :] < radii[:, :, None]
        ty, tx = np.divmod(target_flat, size)
        if central_side is not None:
            ty, tx = ty - sl.start, tx - sl.start
            keep = (ty >= 0) & (ty < int(central_side)) & (tx >= 0) & (tx < int(central_side))
            ty, tx, fill, inside = ty[keep], tx[keep], fill[:, :, keep], inside[:, :, keep]
        cur = out[:, :, ty, tx]
        out[:, :, ty, tx] = np.where(inside, fill, cur)
    result = out[0] if squeeze else out
    return (result, radii) if return_radii else result
