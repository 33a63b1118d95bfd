"""The honest null test: are null lens and control stamps bit-identical through the training path?

A null-injection cube scales every arc to zero, so its lens and control stamps are identical by
construction; a core LR on it can only ever return AUC 0.500 [0.500, 0.500], which measures
nothing. What *can* be checked is that no step between the store and the network input breaks
that identity: the loader (reads, lens = host + arc, control), the centre-mask transform, the
augmentations and the output dtype. For every pair the lens and control stamps are passed
through each step with the same random draws; any bit of difference fails the check.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["null_identity"]


def null_identity(
    null_ds: xr.Dataset, *, centre_mask: dict | None = None, seed: int = 0, max_pairs: int = 2048
) -> dict:
    """Pass/fail identity check of a null cube through the training path.

    Parameters
    ----------
    null_ds
        A null-injection cube (only read).
    centre_mask
        :func:`~lensarray.diagnostics.ablation.centre_mask` keywords of the transform to check
        (default ``{"mode": "uniform", "r_mask": (3, 7)}``).
    seed
        Seed of the loader, the augmentation draws and the transform.
    max_pairs
        Pairs checked (the first ones in loader order; the loader reads whole shards).

    Returns
    -------
    dict
        ``passed`` (bool), ``n_pairs`` checked, ``steps`` (list of {step, identical, n_differing_pairs}),
        ``max_abs_arc`` (largest |arc| stored in the checked pairs, nanomaggy).
    """
    from ..training import _augment, batches
    from .ablation import apply_centre_mask_spec

    cm = dict(centre_mask or {"mode": "uniform", "r_mask": (3.0, 7.0)})
    lens: dict[int, np.ndarray] = {}
    control: dict[int, np.ndarray] = {}
    for batch in batches(
        null_ds, split=None, batch_size=256, seed=seed, augment=(), centre_mask=None, shuffle_buffer=0
    ):
        for img, p, role in zip(batch["images"], batch["pair"], batch["role"], strict=True):
            (lens if role == 1 else control)[int(p)] = img
        if len(set(lens) & set(control)) >= max_pairs:
            break
    pairs = sorted(set(lens) & set(control))[:max_pairs]
    if not pairs:
        return {
            "passed": False,
            "n_pairs": 0,
            "steps": [],
            "max_abs_arc": None,
            "reason": "the loader returned no complete pair",
        }
    L = np.stack([lens[p] for p in pairs])
    C = np.stack([control[p] for p in pairs])
    ids = np.asarray(pairs, np.int64)

    def differing(a: np.ndarray, b: np.ndarray) -> int:
        if a.dtype != b.dtype or a.shape != b.shape:
            return len(pairs)
        same = (a.view(np.uint8) == b.view(np.uint8)).reshape(len(a), -1).all(axis=1)
        return int((~same).sum())

    steps = [("loader (lens = host + arc vs control)", L, C)]
    # the same draws for both stamps of a pair: identity must survive every transform
    aug_l = _augment(L, np.random.default_rng(seed), ("flip", "rot90"))
    aug_c = _augment(C, np.random.default_rng(seed), ("flip", "rot90"))
    steps.append(("augmentations (flip, rot90)", aug_l, aug_c))
    # the training loader's call: the stamps' own PSF (psf mode) and the cube's pixel scale
    psf = null_ds["psf_fwhm"].values[ids] if cm.get("mode") == "psf" else None
    scale = float(null_ds.attrs.get("pixel_scale", 0.262))

    def masked(stamps: np.ndarray) -> np.ndarray:
        return apply_centre_mask_spec(stamps, cm, seed=seed, sample_ids=ids, psf_fwhm=psf, pixel_scale=scale)

    steps.append(("centre-mask transform", masked(aug_l), masked(aug_c)))
    steps.append(
        (
            "dtype float32",
            np.ascontiguousarray(steps[-1][1], dtype=np.float32),
            np.ascontiguousarray(steps[-1][2], dtype=np.float32),
        )
    )
    rows = [
        {"step": name, "n_differing_pairs": differing(a, b), "identical": differing(a, b) == 0, "dtype": str(a.dtype)}
        for name, a, b in steps
    ]
    max_arc = float(np.abs(null_ds["arc"].isel(pair=ids).values).max())
    return {
        "passed": all(r["identical"] for r in rows) and rows[-1]["dtype"] == "float32",
        "n_pairs": len(pairs),
        "steps": rows,
        "max_abs_arc": max_arc,
    }
