"""Reduce a cube, chunk by chunk, to a small per-pair table: the only pass over the pixels.

Every diagnostic works on this table (tens of floats per pair) or on the central boxes of a
deterministic subsample of pairs (the core LR), so memory stays bounded whatever the cube size:
one task per pair chunk reads host/arc/invvar/maskbits of that chunk, returns a few numbers per
pair and lets the pixels go. Exact statistics (quantiles, AUC) are then taken in numpy.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..config import ConfigError, RunConfig, config_from_dict
from ..cube import PAIR_VARS
from ..masking import control_stamp, control_weights_of
from ._compute import compute_tasks
from .ablation import centre_mask
from .visibility import nan_quantile_rows, visibility_proxy

__all__ = ["cube_config", "PairTable", "pair_table", "core_box_features", "lr_subsample", "radius_grid",
           "central_brightness", "N_MASKBITS"]

#: DR10 MASKBITS has bits 0-16.
N_MASKBITS = 17
#: Radius of the robust central brightness (median of the r band inside), pixels.
CENTRAL_RADIUS_PX = 8.0


def cube_config(ds: xr.Dataset) -> RunConfig:
    """The run configuration stored in the cube attrs (the embedded default when absent)."""
    raw = ds.attrs.get("config")
    if not raw:
        return RunConfig()
    data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    try:
        return config_from_dict(data)
    except ConfigError as exc:  # written by another version: audit with the defaults, say so
        warnings.warn(f"cube configuration not understood ({str(exc).splitlines()[-1].strip()}); "
                      "using the default configuration for thresholds and bins", stacklevel=2)
        return RunConfig()


def radius_grid(size: int) -> np.ndarray:
    """Distance of every pixel centre from the stamp origin (centre of pixel size//2), pixels."""
    c = size // 2
    yy, xx = np.mgrid[0:size, 0:size]
    return np.hypot(yy - c, xx - c)


def central_brightness(images: np.ndarray, *, radius_px: float = CENTRAL_RADIUS_PX) -> np.ndarray:
    """Robust central brightness: median of the pixels with r < radius_px, per image.

    ``images`` is ``(..., y, x)`` (nanomaggy per pixel); NaNs are ignored. Returns ``(...)``.
    """
    size = images.shape[-1]
    sel = radius_grid(size) < radius_px
    with np.errstate(all="ignore"):
        return nan_quantile_rows(images[..., sel], 0.5)


@dataclass
class PairTable:
    """Per-pair reductions of a cube (numpy; ``n`` pairs, ``nb`` bands).

    ``pairs``: stored per-pair variables (``theta_e``, ``psf_fwhm``, ``arc_snr``, ...).
    ``meas``: quantities measured from the pixels here (``arc_flux``, ``arc_core_flux``,
    ``core_flux_frac``, ``arc_snr``, ``invvar_sum``, ``invvar_median``, ``invvar_zero_frac``,
    ``maskbit_frac`` (n, 17), ``bad_pixel_frac``).
    ``samples``: per role (``lens``, ``control``) stamp statistics a trainer could see:
    ``nan_count``, ``inf_count``, ``nodata_flux_count`` (pixels with invvar == 0 but non-zero
    flux), ``flux_outside_core`` (nb), ``core_mean`` (nb), ``central_brightness`` (r band median
    in r < 8 px), ``visibility``.
    """

    pairs: dict
    meas: dict
    samples: dict
    bands: list
    size: int
    config: RunConfig

    @property
    def n(self) -> int:
        return int(len(self.pairs["pair"]))

    def is_lens(self) -> np.ndarray:
        """Label of the lens-role sample of each pair (False for hard-negative pairs)."""
        neg = self.pairs.get("hard_negative")
        return np.ones(self.n, bool) if neg is None else (np.asarray(neg) == 0)


def _pair_chunks(ds: xr.Dataset, default: int = 256) -> list[tuple[int, int]]:
    chunks = ds["host"].chunks
    sizes = chunks[0] if chunks else None
    n = ds.sizes["pair"]
    if not sizes:
        sizes = [default] * (n // default) + ([n % default] if n % default else [])
    bounds, start = [], 0
    for s in sizes:
        bounds.append((start, start + s))
        start += s
    return bounds


#: Pairs processed at once inside a chunk task: float64 temporaries stay ~10 MB whatever the
#: chunk (a shard-sized dask chunk may hold thousands of pairs).
SUB_BATCH = 32


def _chunk_stats(host, arc, invvar, maskbits, theta_e, psf_fwhm, **kw) -> dict:
    """Numbers of one pair chunk (numpy in, small numpy out), in sub-batches of SUB_BATCH pairs."""
    n = len(host)
    parts = [_batch_stats(host[i:i + SUB_BATCH], arc[i:i + SUB_BATCH], invvar[i:i + SUB_BATCH],
                          maskbits[i:i + SUB_BATCH], theta_e[i:i + SUB_BATCH], psf_fwhm[i:i + SUB_BATCH], **kw)
             for i in range(0, n, SUB_BATCH)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _batch_stats(host, arc, invvar, maskbits, theta_e, psf_fwhm, *, core_radius, snr_band, ref_band,
                 pixel_scale, w_core=None) -> dict:
    host = np.asarray(host, np.float64)
    arc = np.asarray(arc, np.float64)
    invvar = np.asarray(invvar, np.float64)
    maskbits = np.asarray(maskbits)
    n, nb, size, _ = host.shape
    rad = radius_grid(size)
    core = rad < core_radius
    out: dict = {}
    with np.errstate(all="ignore"):
        arc_tot = arc.sum(axis=(2, 3))
        arc_core = arc[:, :, core].sum(axis=2)
        out["arc_flux"] = arc_tot
        out["arc_core_flux"] = arc_core
        out["core_flux_frac"] = np.where(arc_tot != 0, arc_core / arc_tot, np.nan)
        control = control_stamp(host, arc, w_core)
        diff = host + arc - control  # the label signal (the arc, less any core light the control carries)
        out["arc_snr"] = np.sqrt(np.sum(diff[:, snr_band] ** 2 * invvar[:, snr_band], axis=(1, 2)))
        out["invvar_sum"] = invvar.sum(axis=(2, 3))
        pos = np.where(invvar > 0, invvar, np.nan)
        out["invvar_median"] = nan_quantile_rows(pos.reshape(n, nb, -1), 0.5)
        nodata = invvar <= 0
        out["invvar_zero_frac"] = nodata.mean(axis=(2, 3))
        mb = maskbits.reshape(n, -1).astype(np.int64)
        out["maskbit_frac"] = np.stack([((mb >> b) & 1).mean(axis=1) for b in range(N_MASKBITS)], axis=1)
        out["bad_pixel_frac"] = (nodata.any(axis=1) | (maskbits != 0)).reshape(n, -1).mean(axis=1)
        fwhm_px = np.asarray(psf_fwhm, np.float64)[:, snr_band] / pixel_scale
        for role, stamp in (("lens", host + arc), ("control", control)):
            out[f"{role}.nan_count"] = np.isnan(stamp).sum(axis=(1, 2, 3))
            out[f"{role}.inf_count"] = np.isinf(stamp).sum(axis=(1, 2, 3))
            out[f"{role}.nodata_flux_count"] = (nodata & (stamp != 0)).sum(axis=(1, 2, 3))
            out[f"{role}.flux_outside_core"] = np.nansum(np.where(core, 0.0, stamp), axis=(2, 3))
            out[f"{role}.core_mean"] = np.nanmean(stamp[:, :, core], axis=2)
            out[f"{role}.central_brightness"] = central_brightness(stamp[:, ref_band])
            out[f"{role}.visibility"] = visibility_proxy(
                stamp[:, snr_band], np.asarray(theta_e, np.float64) / pixel_scale, fwhm_px)
    return out


_STAT_INPUTS = ("host", "arc", "invvar", "maskbits", "theta_e", "psf_fwhm")


def _stats_layout(nb: int, size: int, kw: dict) -> list:
    """Column layout of the packed per-pair stats: ``(name, shape, lo, hi, dtype)`` rows (the
    packed width is the last ``hi``); found by running the reduction on one blank pair."""
    blank = _chunk_stats(np.zeros((1, nb, size, size), np.float32), np.zeros((1, nb, size, size), np.float32),
                         np.ones((1, nb, size, size), np.float32), np.zeros((1, size, size), np.int32),
                         np.ones(1), np.ones((1, nb)), **kw)
    rows, lo = [], 0
    for k, v in blank.items():
        width = int(np.prod(v.shape[1:], dtype=int))
        rows.append((k, v.shape[1:], lo, lo + width, v.dtype))
        lo += width
    return rows


def _pack(stats: dict, layout: list) -> np.ndarray:
    n = len(next(iter(stats.values())))
    return np.concatenate([np.asarray(stats[k], np.float64).reshape(n, -1) for k, *_ in layout], axis=1)


def _stats_block(host, arc, invvar, maskbits, theta_e, psf_fwhm, *, layout, kw):
    return _pack(_chunk_stats(host, arc, invvar, maskbits, theta_e, psf_fwhm, **kw), layout)


def _stats_by_block(ds: xr.Dataset, layout: list, kw: dict, progress: bool) -> list:
    """One fused task per pair chunk: the chunk's zarr reads and its reduction run in the same
    task, so pixels never travel between workers (a task per chunk taking the four arrays as
    inputs let the scheduler read them on different workers and ship ~40 MB per shard)."""
    import dask.array as da

    arrays = [ds[v].data for v in _STAT_INPUTS]
    chunks = arrays[0].chunks[0]
    arrays = [a.rechunk({0: chunks}) if a.chunks[0] != chunks else a for a in arrays]
    width = layout[-1][3]
    packed = da.blockwise(_stats_block, "pk", arrays[0], "pbyx", arrays[1], "pbyx", arrays[2], "pbyx",
                          arrays[3], "pyx", arrays[4], "p", arrays[5], "pb", new_axes={"k": width},
                          concatenate=True, dtype=np.float64, layout=layout, kw=kw,
                          meta=np.empty((0, width), np.float64))
    return compute_tasks(list(packed.to_delayed().ravel()), desc="diagnose: per-pair table", progress=progress)


def pair_table(ds: xr.Dataset, *, progress: bool = True, config: RunConfig | None = None) -> PairTable:
    """One lazy pass over the cube: a :class:`PairTable` of per-pair numbers.

    Parameters
    ----------
    ds
        A lensarray cube (dask- or numpy-backed); only read.
    progress
        Show a tqdm bar (works with and without a distributed Client).
    config
        Configuration whose ``diagnostics.core_radius`` and ``brightness.snr_band`` apply;
        default: the one stored in the cube.
    """
    cfg = config or cube_config(ds)
    bands = [str(b) for b in ds["band"].values]
    snr_band = bands.index(cfg.brightness.snr_band) if cfg.brightness.snr_band in bands else min(1, len(bands) - 1)
    ref_band = bands.index("r") if "r" in bands else snr_band
    pixel_scale = float(ds.attrs.get("pixel_scale", cfg.run.pixel_scale))
    kw = dict(core_radius=cfg.diagnostics.core_radius, snr_band=snr_band, ref_band=ref_band,
              pixel_scale=pixel_scale, w_core=control_weights_of(ds.attrs, int(ds.sizes["x"])))
    layout = _stats_layout(len(bands), int(ds.sizes["y"]), kw)
    if hasattr(ds["host"].data, "dask"):
        parts = _stats_by_block(ds, layout, kw, progress)
    else:  # an in-memory cube
        parts = [_pack(_chunk_stats(*(ds[v].values[a:b] for v in _STAT_INPUTS), **kw), layout)
                 for a, b in _pair_chunks(ds)]
    packed = np.concatenate(parts) if parts else np.empty((0, layout[-1][3]))
    merged = {k: packed[:, lo:hi].reshape((-1, *shape)).astype(dtype) for k, shape, lo, hi, dtype in layout} \
        if parts else {}
    meas = {k: v for k, v in merged.items() if "." not in k}
    samples = {role: {k.split(".", 1)[1]: v for k, v in merged.items() if k.startswith(role + ".")}
               for role in ("lens", "control")}
    names = [n for n in PAIR_VARS if n in ds.variables and ds[n].dims[0:1] == ("pair",)]
    # tiny per-pair scalars (~200 bytes a pair): read here, not as hundreds of cluster tasks
    small = ds[names].compute(scheduler="threads")
    pairs = {n: small[n].values for n in names}
    pairs["pair"] = ds["pair"].values
    return PairTable(pairs=pairs, meas=meas, samples=samples, bands=bands, size=int(ds.sizes["x"]), config=cfg)


def lr_subsample(n_pairs: int, max_pairs: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of the pairs used by the core LR.

    All pairs when ``n_pairs <= max_pairs``; else ``max_pairs`` drawn without replacement by
    ``numpy.random.default_rng(seed)`` (deterministic for a given cube size and seed).
    """
    if n_pairs <= max_pairs:
        return np.arange(n_pairs)
    return np.sort(np.random.default_rng(seed).choice(n_pairs, size=max_pairs, replace=False))


def _chunk_boxes(host, arc, pair_ids, psf_fwhm, **kw):
    parts = [_batch_boxes(host[i:i + SUB_BATCH], arc[i:i + SUB_BATCH], pair_ids[i:i + SUB_BATCH],
                          psf_fwhm[i:i + SUB_BATCH], **kw) for i in range(0, len(host), SUB_BATCH)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _batch_boxes(host, arc, pair_ids, psf_fwhm, *, box, ablation_kwargs, seed, w_core=None):
    host = np.asarray(host, np.float32)
    arc = np.asarray(arc, np.float32)
    n, nb, size, _ = host.shape
    lo = size // 2 - box // 2
    sl = (slice(None), slice(None), slice(lo, lo + box), slice(lo, lo + box))
    ids = np.asarray(pair_ids, np.int64)
    out = {}
    for r, (role, stamp) in enumerate((("lens", host + arc), ("control", control_stamp(host, arc, w_core)))):
        out[role] = stamp[sl].reshape(n, -1)
        if ablation_kwargs is not None:
            kw = dict(ablation_kwargs)
            if kw.get("mode") == "psf":
                kw["psf_fwhm"] = np.asarray(psf_fwhm, np.float64)
            masked = centre_mask(stamp, seed=seed, sample_ids=2 * ids + r, **kw)
            out[role + "_masked"] = masked[sl].reshape(n, -1)
    return out


def core_box_features(ds: xr.Dataset, pair_index: np.ndarray, *, box: int, ablation: dict | None = None,
                      seed: int = 0, progress: bool = True) -> dict:
    """Central ``box x box`` pixels of every band for the lens and control stamps of some pairs.

    Parameters
    ----------
    ds
        The cube (read only).
    pair_index
        Sorted positional indices of the pairs (see :func:`lr_subsample`).
    box
        Side of the central box, pixels (centred on pixel size//2, as even boxes
        span size//2 - box//2 .. size//2 + box//2 - 1).
    ablation
        Keyword arguments of :func:`~lensarray.diagnostics.ablation.centre_mask` (without
        ``seed``); when given, the same boxes after centre masking are returned too.

    Returns
    -------
    dict
        ``lens``, ``control`` (and ``lens_masked``, ``control_masked``): ``(n, nb * box * box)``
        float32 in nanomaggy.
    """
    import dask

    sel = ds.isel(pair=np.asarray(pair_index))
    fn = dask.delayed(_chunk_boxes, pure=True)
    tasks = []
    for a, b in _pair_chunks(sel):
        sub = sel.isel(pair=slice(a, b))
        tasks.append(fn(sub["host"].data, sub["arc"].data, sub["pair"].values, sub["psf_fwhm"].data,
                        box=box, ablation_kwargs=ablation, seed=seed,
                        w_core=control_weights_of(ds.attrs, int(ds.sizes["x"]))))
    parts = compute_tasks(tasks, desc="diagnose: core boxes", progress=progress)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
