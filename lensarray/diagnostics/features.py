"""The one pass over the pixels: every per-pair measure diagnose needs, as an ``xarray.Dataset``.

One task per pair chunk reads host, arc, invvar and maskbits of that chunk (the zarr reads are
fused into the task, so pixels never travel between workers) and returns, per pair, a few tens
of numbers -- arc flux / S/N / core flux fraction (through :mod:`lensarray.derived`, the
functions the build stores them with), invvar and mask-bit statistics, per-role stamp counts,
central brightness, the visibility proxy (on a deterministic subsample) -- and, for the pairs
of the core-LR subsample, the central square of pixels of the lens and control stamps (plain
and centre-masked). Nothing reads the pixels a second time.

:func:`pair_measures` returns that Dataset lazily (dask-backed: any cube, built or lazy);
:func:`pair_table` computes it with a progress bar, filling preallocated arrays as chunk
results arrive (the client holds the table once, never a list of chunk copies).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field

import numpy as np
import xarray as xr
from numba import njit

from ..config import ConfigError, RunConfig, config_from_dict
from ..cube import PAIR_VARS
from ..derived import arc_flux_sums, fraction_of_total, matched_filter_snr
from ..geometry import central_side, central_slice, core_pixels, core_square_side
from ..masking import control_stamp, control_weights_of
from ..schema import CubeSchemaError
from ..shard_read import read_pairs, zarr_array_of
from ._compute import compute_tasks, store_source
from ._select import select_quantile
from .ablation import apply_centre_mask_spec
from .core_lr import edge_annuli, edge_annulus_means
from .visibility import nan_quantile_rows, visibility_proxy

__all__ = [
    "cube_config",
    "MeasureSpec",
    "measure_spec",
    "pair_measures",
    "pair_table",
    "lr_subsample",
    "central_brightness",
    "central_stamps",
    "squares_by_role",
    "core_box_features",
    "stored_pair_vars",
    "N_MASKBITS",
    "ROLES",
    "CENTRAL_RADIUS_PX",
    "MEASURED_AS",
]

#: DR10 MASKBITS has bits 0-16.
N_MASKBITS = 17
#: Radius of the robust central brightness (median of the r band inside), pixels.
CENTRAL_RADIUS_PX = 8.0
#: Stamp roles of a pair: the lens stamp (host + arc) and its control (host, plus the arc's core
#: light for a core-matched control: :func:`lensarray.masking.control_stamp`).
ROLES = ("lens", "control")
#: Measured quantities that the cube also stores: their names in the measures Dataset.
MEASURED_AS = {
    "arc_flux": "arc_flux_measured",
    "arc_snr": "arc_snr_measured",
    "core_flux_frac": "core_flux_frac_measured",
}
#: Pairs processed at once inside a chunk task: float64 temporaries stay a few MB whatever the
#: chunk (a shard-sized dask chunk may hold thousands of pairs).
SUB_BATCH = 32


def cube_config(ds: xr.Dataset) -> RunConfig:
    """The run configuration stored in the cube attrs (the embedded default when absent)."""
    raw = ds.attrs.get("config")
    if not raw:
        return RunConfig()
    data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    try:
        return config_from_dict(data)
    except ConfigError as exc:  # written by another version: audit with the defaults, say so
        warnings.warn(
            f"cube configuration not understood ({str(exc).splitlines()[-1].strip()}); "
            "using the default configuration for thresholds and bins",
            stacklevel=2,
        )
        return RunConfig()


def central_brightness(images: np.ndarray, *, radius_px: float = CENTRAL_RADIUS_PX) -> np.ndarray:
    """Robust central brightness: median of the pixels with r < radius_px, per image.

    ``images`` is ``(..., y, x)`` (nanomaggy per pixel); NaNs are ignored. Returns ``(...)``.
    """
    sel = core_pixels(images.shape[-1], radius_px)
    with np.errstate(all="ignore"):
        return nan_quantile_rows(images[..., sel], 0.5)


def lr_subsample(n_pairs: int, max_pairs: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of the pairs used by the core LR (and the visibility proxy).

    All pairs when ``n_pairs <= max_pairs``; else ``max_pairs`` drawn without replacement by
    ``numpy.random.default_rng(seed)`` (deterministic for a given cube size and seed).
    """
    if n_pairs <= max_pairs:
        return np.arange(n_pairs)
    return np.sort(np.random.default_rng(seed).choice(n_pairs, size=max_pairs, replace=False))


@dataclass(frozen=True)
class MeasureSpec:
    """What the pixel pass measures (all radii in pixels).

    ``side`` is the side of the central squares kept for the core-LR subsample: they hold
    the core disc (r < ``core_radius``), the ``box x box`` core box and the ring between them
    (:func:`lensarray.geometry.core_square_side`). ``edge_side`` is the side of the square whose
    1-px annuli the mask-edge probe reads (:func:`lensarray.geometry.central_side`); the pass
    ships their per-pair means (``edge_annulus_mean``), not that wider square.
    ``ablation`` is the centre-mask spec (:func:`~lensarray.diagnostics.ablation.centre_mask`
    keywords, as a sorted tuple of items) or None. ``tables=False`` keeps only the central squares.
    ``core_centre`` (``diagnostics.core_centre``): the core of the measured core flux fraction is
    around the stamp origin (``"stamp"``) or each pair's lens centre (``"lens"``: stored
    ``lens_x``, ``lens_y``, arcsec, over ``pixel_scale``).
    ``w_core`` ``(size, size)``: the core light a core-matched control carries
    (:func:`lensarray.masking.control_weights_of`; None: the control is the host).
    """

    core_radius: float
    snr_band: int
    ref_band: int
    pixel_scale: float
    box: int
    side: int
    edge_side: int
    ablation: tuple | None = None
    seed: int = 0
    tables: bool = True
    core_centre: str = "stamp"
    w_core: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def ablation_kwargs(self) -> dict | None:
        return (
            None if self.ablation is None else {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.ablation}
        )


def measure_spec(
    ds: xr.Dataset,
    config: RunConfig | None = None,
    *,
    ablation: dict | None = None,
    seed: int = 0,
    tables: bool = True,
    box: int | None = None,
    core_radius: float | None = None,
    edge_radius: float = 0.0,
    side: int | None = None,
) -> MeasureSpec:
    """The :class:`MeasureSpec` of a cube under a configuration (default: the cube's own);
    ``box`` and ``core_radius`` override ``diagnostics.core_box`` / ``core_radius`` (pixels);
    ``edge_radius`` (pixels) is the largest radius the mask-edge probe must see (e.g. the core
    mask's); ``side`` overrides the side of the kept central squares (pixels)."""
    cfg = config or cube_config(ds)
    bands = [str(b) for b in ds["band"].values]
    snr_band = bands.index(cfg.brightness.snr_band) if cfg.brightness.snr_band in bands else min(1, len(bands) - 1)
    ref_band = bands.index("r") if "r" in bands else snr_band
    size = int(ds.sizes["x"])
    core_radius = float(cfg.diagnostics.core_radius if core_radius is None else core_radius)
    box = int(cfg.diagnostics.core_box if box is None else box)
    abl = (
        None
        if ablation is None
        else tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in ablation.items()))
    )
    return MeasureSpec(
        core_radius=core_radius,
        snr_band=snr_band,
        ref_band=ref_band,
        pixel_scale=float(ds.attrs.get("pixel_scale", cfg.run.pixel_scale)),
        box=box,
        side=int(side) if side is not None else core_square_side(size, core_radius, box),
        edge_side=central_side(size, core_radius, box, edge_radius),
        ablation=abl,
        seed=int(seed),
        tables=tables,
        core_centre=str(cfg.diagnostics.core_centre),
        w_core=control_weights_of(ds.attrs, size),
    )


# ---------------------------------------------------------------------------------------------
# the per-chunk kernel
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _bad_pixel_role(v, nodata, in_core, in_central, c, cc, out, cbuf, mc, nan, inf, nod):
    """One role's bookkeeping for a pixel off the kernel's short path (no data, or a non-finite
    value in a stamp): NaN / inf / no-data-flux counts, core and outside sums (NaN excluded, inf
    kept), the central buffer (finite only). Returns the updated counters."""
    if np.isnan(v):
        nan += 1
    else:
        if np.isinf(v):
            inf += 1
        if in_core:
            c += v
            cc += 1
        else:
            out += v
        if in_central and np.isfinite(v):
            cbuf[mc] = v
            mc += 1
    if nodata and v != 0:
        nod += 1
    return c, cc, out, mc, nan, inf, nod


@njit(cache=True)
def _pixel_kernel(
    host,
    arc,
    invvar,
    maskbits,
    core,
    central,
    w_core,
    matched,
    ref_band,
    n_bits,
    inv_sum,
    inv_med,
    inv_zero,
    mb_frac,
    bad_frac,
    nan_c,
    inf_c,
    nodata_c,
    out_core,
    core_mean,
    cbright,
):
    """Invvar / mask-bit statistics and per-role stamp counts of each pair, in one sweep of its
    pixels (images flattened to ``(n, band, pixel)``; role 0 = lens = host + arc, 1 = control =
    host, or host + arc * w_core when ``matched`` (the core-matched control)).

    Every sum runs in pixel order in float64, so the figures do not depend on how a pixel was
    classified: a pixel with data and finite stamps (nearly all of them) takes the short path,
    anything else (no data, NaN, inf) the full bookkeeping. Accumulators are scalars (an array
    indexed by role per pixel kept them in memory: 2x slower); medians are exact selections
    (:mod:`lensarray.diagnostics._select`).
    """
    n, nb, npix = host.shape
    buf = np.empty(npix)
    scratch = np.empty(npix + 1)
    cbuf0 = np.empty(npix)
    cbuf1 = np.empty(npix)
    bad = np.zeros(npix, np.bool_)
    counts = np.zeros(n_bits)
    inf = np.inf
    for i in range(n):
        bad[:] = False
        nan0 = nan1 = inf0 = inf1 = nod0 = nod1 = 0
        for b in range(nb):
            s = 0.0
            m = 0
            zero = 0
            out0 = out1 = c0 = c1 = 0.0
            cc0 = cc1 = mc0 = mc1 = 0
            is_ref = b == ref_band
            for p in range(npix):
                w = np.float64(invvar[i, b, p])
                s += w
                h = host[i, b, p]
                a = arc[i, b, p]
                v0 = np.float64(h) + np.float64(a)
                # as control_stamp: float32 host + arc * w_core
                v1 = np.float64(h + a * w_core[p]) if matched else np.float64(h)
                if w > 0.0 and w < inf and abs(v0) < inf and abs(v1) < inf:
                    buf[m] = w
                    m += 1
                    if core[p]:
                        c0 += v0
                        c1 += v1
                        cc0 += 1
                        cc1 += 1
                    else:
                        out0 += v0
                        out1 += v1
                    if is_ref and central[p]:
                        cbuf0[mc0] = v0
                        cbuf1[mc1] = v1
                        mc0 += 1
                        mc1 += 1
                    continue
                nodata = w <= 0
                if nodata:
                    zero += 1
                    bad[p] = True
                elif np.isfinite(w):
                    buf[m] = w
                    m += 1
                c0, cc0, out0, mc0, nan0, inf0, nod0 = _bad_pixel_role(
                    v0, nodata, core[p], is_ref and central[p], c0, cc0, out0, cbuf0, mc0, nan0, inf0, nod0
                )
                c1, cc1, out1, mc1, nan1, inf1, nod1 = _bad_pixel_role(
                    v1, nodata, core[p], is_ref and central[p], c1, cc1, out1, cbuf1, mc1, nan1, inf1, nod1
                )
            inv_sum[i, b] = s
            inv_med[i, b] = select_quantile(buf, m, 0.5, scratch)
            inv_zero[i, b] = zero / npix
            out_core[i, 0, b] = out0
            out_core[i, 1, b] = out1
            core_mean[i, 0, b] = c0 / cc0 if cc0 > 0 else np.nan
            core_mean[i, 1, b] = c1 / cc1 if cc1 > 0 else np.nan
            if is_ref:
                cbright[i, 0] = select_quantile(cbuf0, mc0, 0.5, scratch)
                cbright[i, 1] = select_quantile(cbuf1, mc1, 0.5, scratch)
        counts[:] = 0.0
        nbad = 0
        for p in range(npix):
            v = np.int64(maskbits[i, p])
            if v != 0:
                bad[p] = True
                k = 0
                while v != 0 and k < n_bits:
                    if v & 1:
                        counts[k] += 1.0
                    v >>= 1
                    k += 1
            if bad[p]:
                nbad += 1
        for k in range(n_bits):
            mb_frac[i, k] = counts[k] / npix
        bad_frac[i] = nbad / npix
        nan_c[i, 0] = nan0
        nan_c[i, 1] = nan1
        inf_c[i, 0] = inf0
        inf_c[i, 1] = inf1
        nodata_c[i, 0] = nod0
        nodata_c[i, 1] = nod1


#: Per-pair outputs of the pixel pass: name -> (trailing dims, dtype).
_TABLE_VARS = {
    "arc_flux_measured": (("band",), "float32"),
    "arc_core_flux": (("band",), "float32"),
    "core_flux_frac_measured": (("band",), "float32"),
    "arc_snr_measured": ((), "float32"),
    "invvar_sum": (("band",), "float32"),
    "invvar_median": (("band",), "float32"),
    "invvar_zero_frac": (("band",), "float32"),
    "maskbit_frac": (("bit",), "float32"),
    "bad_pixel_frac": ((), "float32"),
    "nan_count": (("role",), "int32"),
    "inf_count": (("role",), "int32"),
    "nodata_flux_count": (("role",), "int32"),
    "flux_outside_core": (("role", "band"), "float32"),
    "core_mean": (("role", "band"), "float32"),
    "central_brightness": (("role",), "float32"),
    "visibility": (("role",), "float32"),
}
# float32 throughout (the stored per-pair quantities are float32 too): computed in float64, the
# table keeps ~7 significant digits, 0.24 kB a pair instead of 0.45


def _table_batch(
    host, arc, invvar, maskbits, theta_e, psf_fwhm, in_vis, spec: MeasureSpec, lens_px: tuple | None = None
) -> dict:
    n, nb, size, _ = host.shape
    a64 = np.asarray(arc, np.float64)
    core = core_pixels(size, spec.core_radius)
    out: dict = {}
    with np.errstate(all="ignore"):
        total, in_core = arc_flux_sums(a64, core_radius=spec.core_radius, core_centre=lens_px)
        out["arc_flux_measured"] = total
        out["arc_core_flux"] = in_core
        out["core_flux_frac_measured"] = fraction_of_total(in_core, total)
        # the label signal d = lens - control: the arc less any core light the control carries
        signal = a64[:, spec.snr_band] if spec.w_core is None else a64[:, spec.snr_band] * (1.0 - spec.w_core)
        out["arc_snr_measured"] = matched_filter_snr(signal, invvar[:, spec.snr_band])
    f8 = lambda *s: np.empty((n, *s), np.float64)  # noqa: E731
    i4 = lambda *s: np.empty((n, *s), np.int32)  # noqa: E731
    out.update(
        invvar_sum=f8(nb),
        invvar_median=f8(nb),
        invvar_zero_frac=f8(nb),
        maskbit_frac=f8(N_MASKBITS),
        bad_pixel_frac=f8(),
        nan_count=i4(2),
        inf_count=i4(2),
        nodata_flux_count=i4(2),
        flux_outside_core=f8(2, nb),
        core_mean=f8(2, nb),
        central_brightness=f8(2),
    )
    flat = lambda a, *shape: np.ascontiguousarray(a).reshape(*shape)  # noqa: E731
    _pixel_kernel(
        flat(host, n, nb, -1),
        flat(arc, n, nb, -1),
        flat(invvar, n, nb, -1),
        # one dtype whatever the cube stores (DR10 bits 0-16 fit): one compiled signature, which a
        # fresh worker loads from numba's cache instead of compiling (~5-10 s) per new dtype
        flat(np.asarray(maskbits, np.int32), n, -1),
        core.ravel(),
        core_pixels(size, CENTRAL_RADIUS_PX).ravel(),
        np.zeros(size * size, np.float32)
        if spec.w_core is None
        else np.ascontiguousarray(spec.w_core, np.float32).ravel(),
        spec.w_core is not None,
        spec.ref_band,
        N_MASKBITS,
        out["invvar_sum"],
        out["invvar_median"],
        out["invvar_zero_frac"],
        out["maskbit_frac"],
        out["bad_pixel_frac"],
        out["nan_count"],
        out["inf_count"],
        out["nodata_flux_count"],
        out["flux_outside_core"],
        out["core_mean"],
        out["central_brightness"],
    )
    vis = np.full((n, 2), np.nan)
    sel = np.flatnonzero(in_vis)
    if sel.size:
        # the proxy is ~2/3 of the pass's cost per stamp: measured on a subsample (see diagnose)
        te_px = np.asarray(theta_e, np.float64)[sel] / spec.pixel_scale
        fwhm_px = np.asarray(psf_fwhm, np.float64)[sel, spec.snr_band] / spec.pixel_scale
        h = np.asarray(host[sel, spec.snr_band], np.float64)
        a = np.asarray(arc[sel, spec.snr_band], np.float64)
        vis[sel, 0] = visibility_proxy(h + a, te_px, fwhm_px)
        vis[sel, 1] = visibility_proxy(control_stamp(h, a, spec.w_core), te_px, fwhm_px)
    out["visibility"] = vis
    return out


def central_stamps(host, arc, side: int, w_core=None) -> np.ndarray:
    """Central ``side`` squares ``(n, role, band, side, side)`` of the lens (host + arc) and control
    (:func:`lensarray.masking.control_stamp`) stamps of ``host``, ``arc`` ``(n, band, size, size)``."""
    sl = central_slice(host.shape[-1], side)
    h, a = host[..., sl, sl], arc[..., sl, sl]  # elementwise: slicing first gives the same values
    return np.stack([h + a, control_stamp(h, a, None if w_core is None else w_core[sl, sl])], axis=1)


def squares_by_role(central: np.ndarray, suffix: str = "") -> dict:
    """``{"lens" + suffix, "control" + suffix}``: ``(m, band * side * side)`` band-major rows of
    central squares ``(m, role, band, side, side)`` (the layout the core LR reads)."""
    m = central.shape[0]
    return {f"{role}{suffix}": central[:, r].reshape(m, -1) for r, role in enumerate(ROLES)}


def _central_batch(host, arc, psf_fwhm, pair_id, spec: MeasureSpec) -> dict:
    """Central squares ``(n, role, band, side, side)`` of the lens and control stamps (and masked)
    and the mask-edge probe's annulus means on the ``edge_side`` square."""
    big = max(spec.side, spec.edge_side)
    sq = central_stamps(host, arc, big, spec.w_core)
    n = len(sq)
    e = central_slice(big, spec.edge_side)
    edge = sq[..., e, e]
    c = central_slice(big, spec.side)
    out = {
        "central": np.ascontiguousarray(sq[..., c, c]),
        "edge_annulus_mean": edge_annulus_means(edge[:, 0].reshape(n, -1), edge[:, 1].reshape(n, -1), spec.edge_side),
    }
    kw = spec.ablation_kwargs
    if kw is not None:
        # the mask's donors lie outside the central square: it needs the whole stamps
        lens = host + arc  # float32, as a trainer's lens stamp
        control = control_stamp(host, arc, spec.w_core)
        ids = np.asarray(pair_id, np.int64)
        masked = [
            apply_centre_mask_spec(
                st,
                kw,
                seed=spec.seed,
                sample_ids=2 * ids + r,
                psf_fwhm=psf_fwhm,
                pixel_scale=spec.pixel_scale,
                central_side=spec.side,
            )
            for r, st in enumerate((lens, control))
        ]
        out["central_masked"] = np.stack(masked, axis=1)
    return out


def _measure_block(*arrays, spec: MeasureSpec, names: tuple[str, ...], stored: tuple[str, ...]):
    """All measures of one pair chunk (numpy in, small numpy out), in sub-batches of SUB_BATCH
    pairs; ``arrays`` are the chunk's ``names`` (pixels, per-pair inputs, flags), and the
    ``stored`` per-pair variables among them are passed through (read here, next to the pixels)."""
    inp = dict(zip(names, arrays, strict=True))
    host = np.asarray(inp["host"], np.float32)
    arc = np.asarray(inp["arc"], np.float32)
    invvar = np.asarray(inp["invvar"], np.float32)
    maskbits = np.asarray(inp["maskbits"])
    theta_e, psf_fwhm = np.asarray(inp["theta_e"]), np.asarray(inp["psf_fwhm"])
    flags = np.asarray(inp["pair_flags"], np.int64)  # columns: pair id, in the LR subsample, in the visibility one
    pair_id, in_lr, in_vis = flags[:, 0], flags[:, 1].astype(bool), flags[:, 2].astype(bool)
    lens_px = None
    if spec.core_centre == "lens":
        lens_px = (
            np.asarray(inp["lens_x"], np.float64) / spec.pixel_scale,
            np.asarray(inp["lens_y"], np.float64) / spec.pixel_scale,
        )
    parts, cparts, amax = [], [], []
    for i in range(0, len(host), SUB_BATCH):
        s = slice(i, i + SUB_BATCH)
        if spec.tables:
            parts.append(
                _table_batch(
                    host[s],
                    arc[s],
                    invvar[s],
                    maskbits[s],
                    theta_e[s],
                    psf_fwhm[s],
                    in_vis[s],
                    spec,
                    None if lens_px is None else (lens_px[0][s], lens_px[1][s]),
                )
            )
        else:  # the squares-only pass (core_lr_on_cube) reports the largest |arc| it saw
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN arc gives NaN
                amax.append(np.nanmax(np.abs(arc[s]).reshape(len(arc[s]), -1), axis=1))
        lr = np.flatnonzero(in_lr[s]) + i
        if lr.size:
            cparts.append(_central_batch(host[lr], arc[lr], psf_fwhm[lr], pair_id[lr], spec))
    out = (
        {k: np.concatenate([p[k] for p in parts]).astype(_TABLE_VARS[k][1], copy=False) for k in parts[0]}
        if parts
        else {}
    )
    if not spec.tables:
        out["arc_abs_max"] = np.concatenate(amax).astype(np.float32) if amax else np.zeros(0, np.float32)
    if cparts:
        out.update({k: np.concatenate([p[k] for p in cparts]) for k in cparts[0]})
    out.update({k: np.asarray(inp[k]) for k in stored})
    return out


_INPUTS = ("host", "arc", "invvar", "maskbits", "theta_e", "psf_fwhm")
_PIXELS = _INPUTS[:4]


def _read_rows(src, block_info=None) -> np.ndarray:
    """One block of a stored pixel array: its pairs read by :func:`lensarray.shard_read.read_pairs`."""
    a, b = block_info[None]["array-location"][0]
    return read_pairs(src, a, b)


def _shard_reads(data):
    """``data`` (a plain chunked read of a stored pixel array, as :func:`xarray.open_zarr`
    makes it) read block by block through :func:`~lensarray.shard_read.read_pairs` (inner chunks
    decompressed into place: 0.05-0.1 CPU ms a pair less than zarr's read); any other ``data``
    unchanged. Same values either way."""
    import dask
    import dask.array as da

    src = zarr_array_of(data)
    if src is None:
        return data
    return da.map_blocks(
        _read_rows,
        dask.delayed(src, pure=True),  # one graph key, like open_zarr's backend array
        chunks=data.chunks,
        dtype=data.dtype,
        meta=np.empty((0,) * data.ndim, data.dtype),
        name=f"read-{data.name}",
    )


#: The trailing dimension of the per-chunk ``pair_flags`` input (pair id, in_lr, in_vis).
PAIR_FLAGS_DIM = "_pair_flag"


def _blocks(
    ds: xr.Dataset, spec: MeasureSpec, lr_index, vis_index, stored: tuple[str, ...] = (), default_chunk: int = 256
):
    """One fused dask task per pair chunk (``Delayed`` returning the chunk's dict), the chunk
    sizes and the number of core-LR pairs per chunk."""
    import dask.array as da

    n = int(ds.sizes["pair"])
    names = list(_INPUTS) + (["lens_x", "lens_y"] if spec.core_centre == "lens" else [])
    names += [v for v in stored if v not in names]
    chunks: tuple[int, ...] | None = None
    arrays = []
    for v in names:
        data = ds[v].data
        if not hasattr(data, "dask"):
            first = chunks if chunks is not None else min(default_chunk, max(n, 1))
            data = da.from_array(np.asarray(data), chunks=(first,) + (-1,) * (data.ndim - 1))
        elif v in _PIXELS:
            data = _shard_reads(data)
        if chunks is None:
            chunks = tuple(data.chunks[0])
        want = (chunks,) + tuple((s,) for s in data.shape[1:])
        arrays.append(data if data.chunks == want else data.rechunk(want))
    assert chunks is not None

    def flags(index):
        m = np.zeros(n, bool)
        if index is not None:
            m[np.asarray(index, np.int64)] = True
        return m

    lr, vis = flags(lr_index), flags(vis_index if vis_index is not None else np.arange(n))
    # pair ids and the two subsample flags in one in-memory array: one data key per chunk
    names.append("pair_flags")
    flags_arr = np.stack([np.asarray(ds["pair"].values, np.int64), lr, vis], axis=1)
    arrays.append(da.from_array(flags_arr, chunks=(chunks, 3)))
    # blockwise fuses each chunk's zarr reads into its reduction task (a task taking the arrays
    # as inputs let the scheduler read them on different workers and ship ~40 MB per shard).
    # Dask fuses only inputs whose indices all appear in the output: a trailing dimension given
    # a letter of its own is contracted, and then no input fuses (40 chunks of a 10k cube were
    # 1,062 tasks and 3 s of transfers between workers). So each dimension name has one letter,
    # shared by every input, and the output carries them all as single-chunk axes of size 1.
    dims_of = [tuple(str(d) for d in ds[v].dims[1:]) for v in names[:-1]] + [(PAIR_FLAGS_DIM,)]
    dim_names = sorted({d for dims in dims_of for d in dims})
    if len(dim_names) > 25:
        raise CubeSchemaError(f"cube: allowed at most 25 dimensions besides pair, got {len(dim_names)}")
    letter = dict(zip(dim_names, "abcdefghijklmnoqrstuvwxyz", strict=False))
    args: list = []
    for a, dims in zip(arrays, dims_of, strict=True):
        args += [a, "p" + "".join(letter[d] for d in dims)]
    out_letters = "".join(letter[d] for d in dim_names)
    obj = da.blockwise(
        _measure_block,
        "p" + out_letters,
        *args,
        dtype=object,
        meta=np.empty((0,) * (1 + len(out_letters)), object),
        adjust_chunks=dict.fromkeys(out_letters, 1),
        spec=spec,
        names=tuple(names),
        stored=tuple(stored),
    )
    lr_counts = [int(c) for c in np.add.reduceat(lr.astype(np.int64), np.r_[0, np.cumsum(chunks)[:-1]])] if n else []
    return list(obj.to_delayed().ravel()), list(chunks), lr_counts


#: One output variable of the pixel pass: dims (``pair`` or ``lr_pair`` first), shape after the
#: first dim, dtype.
_Layout = dict[str, tuple[tuple[str, ...], tuple[int, ...], np.dtype]]


def _layout(ds: xr.Dataset, spec: MeasureSpec, stored: tuple[str, ...] = ()) -> _Layout:
    """name -> (dims, shape-after-pair, dtype) of every output variable (fixed by the spec and the
    cube's schema, not discovered from a blank pair)."""
    sizes = {"band": int(ds.sizes["band"]), "bit": N_MASKBITS, "role": 2}
    out: _Layout = {}
    if spec.tables:
        for k, (dims, dt) in _TABLE_VARS.items():
            out[k] = (("pair", *dims), tuple(sizes[d] for d in dims), np.dtype(dt))
    else:
        out["arc_abs_max"] = (("pair",), (), np.dtype("float32"))
    cdims = ("lr_pair", "role", "band", "cy", "cx")
    cshape = (2, sizes["band"], spec.side, spec.side)
    out["central"] = (cdims, cshape, np.dtype("float32"))
    out["edge_annulus_mean"] = (("lr_pair", "annulus"), (edge_annuli(spec.edge_side),), np.dtype("float64"))
    if spec.ablation is not None:
        out["central_masked"] = (cdims, cshape, np.dtype("float32"))
    for v in stored:
        out[v] = (tuple(str(d) for d in ds[v].dims), tuple(int(x) for x in ds[v].shape[1:]), ds[v].dtype)
    return out


def stored_pair_vars(ds: xr.Dataset, names=None) -> tuple[str, ...]:
    """The cube's stored per-pair variables (dims starting with ``pair``, :data:`lensarray.cube.PAIR_VARS`)
    among ``names`` (default all of them), in schema order."""
    want = PAIR_VARS if names is None else set(names)
    return tuple(v for v in PAIR_VARS if v in want and v in ds.variables and ds[v].dims[0:1] == ("pair",))


def split_stored(ds: xr.Dataset, names: tuple[str, ...]) -> tuple[tuple[str, ...], dict]:
    """Stored per-pair variables ``names`` split into those the pixel tasks read and those read
    whole in the client (name -> backend array, :func:`~lensarray.diagnostics._compute.store_source`).

    Plain reads of a zarr array that are not pixel-pass inputs are read whole: in the tasks each
    costs a zarr call per 256-pair chunk (~2 ms each, 0.15 ms of worker time a pair for
    diagnose's 18 variables, against 0.045 ms a pair read whole). A lazy or selected cube keeps
    them in the tasks (its values exist only there).
    """
    whole = {}
    for v in names:
        src = None if v in _INPUTS else store_source(ds[v].data)
        if src is not None:
            whole[v] = src
    return tuple(v for v in names if v not in whole), whole


def _coords(ds: xr.Dataset, spec: MeasureSpec, lr_index) -> dict:
    off = np.arange(spec.side) - spec.side // 2
    c = {
        "pair": ds["pair"].values,
        "band": ds["band"].values,
        "bit": np.arange(N_MASKBITS),
        "role": np.array(ROLES),
        "cy": off,
        "cx": off,
    }
    c["lr_pair"] = ds["pair"].values[np.asarray(lr_index, np.int64)] if lr_index is not None else np.zeros(0, np.int64)
    c["annulus"] = np.arange(edge_annuli(spec.edge_side))  # inner radius of each 1-px annulus, pixels
    return c


def _attrs(spec: MeasureSpec) -> dict:
    return {
        "core_radius_px": spec.core_radius,
        "core_box": spec.box,
        "central_side": spec.side,
        "edge_side": spec.edge_side,
        "snr_band_index": spec.snr_band,
        "pixel_scale": spec.pixel_scale,
        "core_centre": spec.core_centre,
        "ablation": json.dumps(spec.ablation_kwargs) if spec.ablation is not None else "",
        "description": "per-pair measures of the one pixel pass (lensarray.diagnostics.features)",
    }


def _item(res: dict, name: str, shape: tuple, dtype) -> np.ndarray:
    return res[name] if name in res else np.zeros((0, *shape), dtype)  # a chunk without LR pairs


def pair_measures(
    ds: xr.Dataset,
    *,
    config: RunConfig | None = None,
    spec: MeasureSpec | None = None,
    lr_index: np.ndarray | None = None,
    vis_index: np.ndarray | None = None,
    stored=(),
) -> xr.Dataset:
    """The per-pair measures of a cube as a lazy (dask-backed) Dataset: one task per pair chunk.

    Parameters
    ----------
    ds
        A lensarray cube, built (opened from Zarr), lazy or in memory; only read.
    config
        Configuration whose ``diagnostics.core_radius`` / ``core_box`` / ``core_centre`` and
        ``brightness.snr_band`` apply (default: the one stored in the cube); ignored when ``spec``
        is given.
    spec
        What to measure (:func:`measure_spec`).
    lr_index
        Sorted positional indices of the pairs whose central squares are kept (``central``,
        dims ``lr_pair, role, band, cy, cx``; ``cy``/``cx`` are pixel offsets from the stamp origin).
    vis_index
        Pairs whose visibility proxy is measured (NaN elsewhere); default all.
    stored
        Names of the cube's stored per-pair variables to carry along (read in the same tasks).

    Returns
    -------
    xarray.Dataset
        Variables of dims ``(pair[, band | bit | role])`` (see the module doc) and the central squares.
    """
    import dask
    import dask.array as da

    spec = spec or measure_spec(ds, config)
    stored = stored_pair_vars(ds, stored)
    blocks, chunks, lr_counts = _blocks(ds, spec, lr_index, vis_index, stored)
    layout = _layout(ds, spec, stored)
    get = dask.delayed(_item, pure=True)
    data_vars = {}
    for name, (dims, shape, dt) in layout.items():
        lens = lr_counts if dims[0] == "lr_pair" else chunks
        parts = [
            da.from_delayed(get(b, name, shape, dt), shape=(m, *shape), dtype=dt)
            for b, m in zip(blocks, lens, strict=True)
        ]
        data = da.concatenate(parts) if parts else da.zeros((0, *shape), dtype=dt)
        data_vars[name] = (dims, data, ds[name].attrs if name in stored else {})
    return xr.Dataset(data_vars, coords=_coords(ds, spec, lr_index), attrs=_attrs(spec))


def pair_table(
    ds: xr.Dataset,
    *,
    progress: bool = True,
    config: RunConfig | None = None,
    spec: MeasureSpec | None = None,
    lr_index: np.ndarray | None = None,
    vis_index: np.ndarray | None = None,
    stored=None,
) -> xr.Dataset:
    """:func:`pair_measures` computed (numpy-backed), plus the cube's stored per-pair variables.

    Chunk results are written into preallocated arrays as they arrive (with a tqdm bar, under a
    distributed Client or not). The stored per-pair variables (``theta_e``, ``psf_fwhm``,
    ``split``, ...; ``stored``: those named, default all) are added under their own names: read
    whole in this process, overlapped with the pixel pass, where they are plain reads of a
    stored array; by the pixel tasks otherwise (a lazy or selected cube); the measured copies of stored quantities are named
    by :data:`MEASURED_AS`. ``is_lens`` (pair) marks real injections (not hard negatives).
    """
    from concurrent.futures import ThreadPoolExecutor

    spec = spec or measure_spec(ds, config)
    names = stored_pair_vars(ds, stored)
    in_tasks, whole = split_stored(ds, names)
    blocks, chunks, lr_counts = _blocks(ds, spec, lr_index, vis_index, in_tasks)
    layout = _layout(ds, spec, names)
    n = int(ds.sizes["pair"])
    n_lr = int(sum(lr_counts))
    arrays = {
        k: np.empty(((n_lr if dims[0] == "lr_pair" else n), *shape), dt) for k, (dims, shape, dt) in layout.items()
    }
    starts = np.r_[0, np.cumsum(chunks)[:-1]].astype(int) if chunks else np.zeros(0, int)
    lr_starts = np.r_[0, np.cumsum(lr_counts)[:-1]].astype(int) if lr_counts else np.zeros(0, int)

    def sink(i: int, res: dict) -> None:
        for k, (dims, _, _) in layout.items():
            if k in res:
                a = lr_starts[i] if dims[0] == "lr_pair" else starts[i]
                arrays[k][a : a + len(res[k])] = res[k]

    with ThreadPoolExecutor(max_workers=1) as pool:
        read = pool.submit(lambda: {v: np.asarray(src) for v, src in whole.items()})
        compute_tasks(blocks, desc="diagnose: per-pair table", progress=progress, sink=sink)
        for v, values in read.result().items():
            arrays[v][...] = values
    table = xr.Dataset(
        {k: (layout[k][0], v, ds[k].attrs if k in names else {}) for k, v in arrays.items()},
        coords=_coords(ds, spec, lr_index),
        attrs=_attrs(spec),
    )
    neg = table["hard_negative"].values if "hard_negative" in table else np.zeros(n, np.int8)
    vis = np.zeros(n, bool)
    vis[np.asarray(vis_index if vis_index is not None else np.arange(n), np.int64)] = True
    table = table.assign_coords(is_lens=("pair", neg == 0), visibility_measured=("pair", vis))
    table.attrs["bands"] = [str(b) for b in ds["band"].values]
    table.attrs["stamp_size"] = int(ds.sizes["x"])
    return table


def core_box_features(
    ds: xr.Dataset,
    pair_index: np.ndarray,
    *,
    box: int,
    ablation: dict | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Central ``box x box`` squares of the lens and control stamps of the pairs ``pair_index``
    (positional), from the pixel pass (:func:`pair_table` with ``tables=False``).

    Returns
    -------
    dict
        ``lens``, ``control`` (and ``lens_masked``, ``control_masked`` with ``ablation``):
        ``(n, band * box * box)`` float32 (nanomaggy), band-major; ``arc_abs_max`` ``(n,)``.
    """
    idx = np.asarray(pair_index, np.int64)
    sub = ds.isel(pair=idx)
    spec = measure_spec(sub, ablation=ablation, seed=seed, tables=False, side=box)
    table = pair_table(sub, spec=spec, lr_index=np.arange(idx.size), progress=progress)
    out = squares_by_role(table["central"].values)
    if "central_masked" in table:
        out.update(squares_by_role(table["central_masked"].values, "_masked"))
    out["arc_abs_max"] = table["arc_abs_max"].values
    return out
