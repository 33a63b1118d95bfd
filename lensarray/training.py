"""Training loader: shuffled, bounded-memory batches of lens/control stamps from a cube.

Reads the Zarr store one shard at a time (the store's write unit; a few MB), in a random shard
order per epoch, and mixes samples through a shuffle buffer, so batches are close to i.i.d.
while memory holds only ``shuffle_buffer`` samples plus one shard. Everything random derives
from ``(seed, epoch)``: the same call yields the same batches.

Labels: the lens role (host + arc) of a normal pair is 1; its control (host, or host + the arc's
core light with a core-matched control: :func:`lensarray.masking.control_stamp`) is 0; both
stamps of a hard-negative pair are 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .cube import SPLIT_NAMES
from .shard_read import read_pairs
from .storage import zarr_array

__all__ = ["batches", "AUGMENTATIONS", "METADATA_VARS"]

AUGMENTATIONS = ("flip", "rot90")

#: Per-pair variables returned with every batch (a trainer may stratify or weight by them).
METADATA_VARS = ("theta_e", "arc_snr", "psf_fwhm", "src_reff", "hard_negative", "split", "region")


def _open(source, storage_options):
    if hasattr(source, "data_vars"):
        return source
    from .cube import open_cube

    return open_cube(str(source), storage_options=storage_options)


def _read(var, a: int, b: int) -> np.ndarray:
    """Pairs [a, b) of a variable: straight from the dask chunk (no xarray indexing overhead)."""
    data = var.data
    if hasattr(data, "dask"):
        return data[a:b].compute(scheduler="synchronous")
    return np.asarray(data[a:b])


def _augment(images: np.ndarray, rng: np.random.Generator, ops: tuple[str, ...]) -> np.ndarray:
    out = images
    if "flip" in ops:
        flip = rng.random(len(out)) < 0.5
        out = np.where(flip[:, None, None, None], out[..., ::-1], out)
    if "rot90" in ops:
        k = rng.integers(0, 4, len(out))
        rotated = np.empty_like(out)
        for q in range(4):
            sel = k == q
            if sel.any():
                rotated[sel] = np.rot90(out[sel], q, axes=(-2, -1))
        out = rotated
    return out


def batches(
    source,
    split: str | None = "train",
    *,
    batch_size: int = 64,
    seed: int = 0,
    epoch: int = 0,
    shuffle_buffer: int = 2048,
    augment: tuple[str, ...] = ("flip", "rot90"),
    centre_mask: dict | None = None,
    storage_options: dict | None = None,
    shards: list[int] | None = None,
    drop_last: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield shuffled batches for one epoch.

    Parameters
    ----------
    source
        Cube URL (local or ``s3://``) or an opened ``xarray.Dataset``.
    split
        ``"train"``, ``"val"``, ``"test"`` or ``None`` for every pair.
    batch_size
        Stamps per batch (lens and control stamps count separately).
    seed, epoch
        Everything random (shard order, buffer shuffle, augmentations, centre-mask draws)
        derives from these two numbers.
    shuffle_buffer
        Samples held for mixing across shards (memory ~ buffer x bands x size^2 x 4 bytes).
    augment
        Any of ``"flip"`` (left-right) and ``"rot90"`` (random multiple of 90 degrees).
    centre_mask
        Keyword arguments for :func:`lensarray.diagnostics.ablation.centre_mask` (e.g.
        ``{"mode": "uniform"}``) to fill the core from the outer annulus, or ``None``.
    storage_options
        fsspec options for ``s3://`` sources.
    shards
        Restrict to these shard indices (the torch adapter splits shards across workers).
    drop_last
        Drop a final incomplete batch.

    Yields
    ------
    dict
        ``images`` (b, band, y, x) float32 nanomaggy, ``labels`` (b,) int8, ``pair`` (b,) int64,
        ``role`` (b,) int8 (1 lens stamp, 0 control stamp), ``metadata`` dict of per-sample arrays.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size}: allowed >= 1")
    if split is not None and split not in SPLIT_NAMES:
        raise ValueError(f"split = {split!r}: allowed one of {', '.join(SPLIT_NAMES)} or None")
    bad = [a for a in augment if a not in AUGMENTATIONS]
    if bad:
        raise ValueError(f"augment = {bad}: allowed items from {', '.join(AUGMENTATIONS)}")
    ds = _open(source, storage_options)
    group = None
    if not hasattr(source, "data_vars"):
        # read whole shards straight from the store (shard_read.read_pairs: zarr's values,
        # decompressed into place), without dask/xarray indexing overhead
        from .store import open_group

        group = open_group(str(source), storage_options, mode="r")
    n = int(ds.sizes["pair"])
    shard_pairs = int(
        ds.attrs.get("shard_pairs", ds["host"].data.chunks[0][0] if hasattr(ds["host"].data, "chunks") else n)
    )
    n_shards = -(-n // shard_pairs)
    meta_vars = [v for v in METADATA_VARS if v in ds]
    # per-pair scalars (small) read here: under a distributed Client .values would otherwise
    # become a cluster computation of one task per chunk and variable
    import dask

    with dask.config.set(scheduler="threads"):
        split_all = ds["split"].values if "split" in ds else np.full(n, -1, np.int8)
        neg_all = ds["hard_negative"].values if "hard_negative" in ds else np.zeros(n, np.int8)
        meta_all = {v: ds[v].values for v in meta_vars}
    # positions index the opened arrays; the ids reported are the cube's pair ids (they differ
    # when unbuilt shards were dropped by open_cube(..., allow_incomplete=True))
    pair_ids = np.asarray(ds["pair"].values, dtype=np.int64)
    want = SPLIT_NAMES.index(split) if split is not None else None
    pixel_scale = float(ds.attrs.get("pixel_scale", 0.262))

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), 0x7A1]))
    order = rng.permutation(n_shards if shards is None else np.asarray(shards))
    if shards is not None:
        order = np.asarray(shards)[rng.permutation(len(shards))]

    # the shuffle pool is one preallocated array with a free list: a shard's stamps are written
    # into free slots and a batch is gathered out of random live slots, which become free. Each
    # stamp is copied once into the pool and once into its batch (no compaction moves).
    nb_, sz = int(ds.sizes["band"]), int(ds.sizes["y"])
    capacity = max(shuffle_buffer, 0) + 2 * shard_pairs + batch_size
    pool_img = np.empty((capacity, nb_, sz, sz), dtype=np.float32)
    pool_rows = np.empty((capacity, 2), dtype=np.int64)
    live = np.empty(0, dtype=np.int64)
    free = np.arange(capacity, dtype=np.int64)

    def emit(count: int):
        nonlocal live, free
        pick = rng.choice(live.size, size=count, replace=False)
        slots = live[pick]
        out_img, out_rows = pool_img[slots], pool_rows[slots]
        live = np.delete(live, pick)
        free = np.concatenate([slots, free])
        return out_img, out_rows

    def package(imgs, rows):
        pair, role = rows[:, 0], rows[:, 1]
        if augment:
            imgs = _augment(imgs, rng, tuple(augment))
        if centre_mask is not None:
            from .diagnostics.ablation import apply_centre_mask_spec

            imgs = apply_centre_mask_spec(
                imgs,
                centre_mask,
                seed=int(seed) * 1000003 + int(epoch),
                sample_ids=2 * pair + (1 - role),
                psf_fwhm=meta_all["psf_fwhm"][pair] if "psf_fwhm" in meta_all else None,
                pixel_scale=pixel_scale,
            )
        labels = ((role == 1) & (neg_all[pair] == 0)).astype(np.int8)
        return {
            "images": np.ascontiguousarray(imgs, dtype=np.float32),
            "labels": labels,
            "pair": pair_ids[pair],
            "role": role.astype(np.int8),
            "metadata": {v: meta_all[v][pair] for v in meta_vars},
        }

    arc_is_lazy = hasattr(ds["arc"].data, "dask")
    from .masking import control_stamp, control_weights_of

    w_core = control_weights_of(ds.attrs, sz)  # core-matched control: the control carries arc * w_core

    host_arr = zarr_array(group, "host") if group is not None else None
    arc_arr = zarr_array(group, "arc") if group is not None else None

    def read(s: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        a, b = int(s) * shard_pairs, min((int(s) + 1) * shard_pairs, n)
        sel = np.arange(a, b)
        if want is not None:
            sel = sel[split_all[a:b] == want]
        if sel.size == 0:
            return sel, None, None
        if host_arr is not None and arc_arr is not None:
            host, arc = read_pairs(host_arr, a, b), read_pairs(arc_arr, a, b)
        else:
            host, arc = np.asarray(_read(ds["host"], a, b)), np.asarray(_read(ds["arc"], a, b))
        if sel.size != b - a:  # a split filter: only then a fancy-index copy
            host, arc = host[sel - a], arc[sel - a]
        # sum in place only into an array this read made: a numpy-backed cube hands out views of
        # the caller's data
        owned = group is not None or sel.size != b - a or arc_is_lazy
        control = control_stamp(host, arc, w_core)
        return sel, control, np.add(host, arc, out=arc if owned else None)

    # the next shard is read (decompressed, checksummed) and its lens stamps summed in a
    # background thread while the current one is shuffled and batched: zarr's codecs and numpy
    # release the GIL
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lensarray-prefetch") as pool:
        pending = pool.submit(read, order[0]) if len(order) else None
        for i in range(len(order)):
            assert pending is not None  # submitted for every index below len(order)
            sel, control, lens = pending.result()
            pending = pool.submit(read, order[i + 1]) if i + 1 < len(order) else None
            if sel.size == 0:
                continue
            m = sel.size
            slots, free = free[: 2 * m], free[2 * m :]
            pool_img[slots[:m]] = lens
            pool_img[slots[m:]] = control
            pool_rows[slots[:m], 0] = sel
            pool_rows[slots[:m], 1] = 1
            pool_rows[slots[m:], 0] = sel
            pool_rows[slots[m:], 1] = 0
            live = np.concatenate([live, slots])
            while live.size >= shuffle_buffer + batch_size:
                yield package(*emit(batch_size))
    while live.size >= batch_size:
        yield package(*emit(batch_size))
    if live.size and not drop_last:
        yield package(*emit(live.size))
