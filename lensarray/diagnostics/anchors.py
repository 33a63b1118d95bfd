"""Host brightness against an anchor population (real lenses / real LRG cutouts).

The robust central brightness of a stamp is the median of the r-band pixels within 8 pixels
(0.262"/pixel, i.e. 2.1") of the centre, in nanomaggy per 0.262" pixel. Cutouts at another pixel
scale are compared at the same angular radius and rescaled by the pixel area. The hosts of the
cube (control stamps) are compared with the anchors by the ratio of medians (bootstrap CI), the
two-sample KS and Anderson-Darling tests and Cliff's delta (effect size, -1..1).
"""

from __future__ import annotations

import glob
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats

from ..conventions import reference_band_index
from ..errors import BadInputError
from .features import CENTRAL_RADIUS_PX, central_brightness

__all__ = [
    "read_anchor_cutouts",
    "iter_anchor_cutouts",
    "anchor_brightness",
    "cube_central_brightness",
    "compare_brightness",
    "cliffs_delta",
    "AnchorError",
]

REF_SCALE = 0.262


class AnchorError(BadInputError):
    """The anchors argument cannot be read."""


def _fits_r_plane(path: Path) -> tuple[np.ndarray, float]:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        hdu = next((h for h in hdul if getattr(h, "data", None) is not None and np.ndim(h.data) in (2, 3)), None)
        if hdu is None:
            raise AnchorError(f"anchors: {path} has no 2-D or 3-D image HDU")
        data = np.asarray(hdu.data, np.float64)
        hdr = hdu.header
        if data.ndim == 3:
            bands = str(hdr.get("BANDS", "")).replace(",", "").strip()
            names = [str(hdr.get(f"BAND{i}", "")).strip() for i in range(data.shape[0])]
            if "r" in names:
                k = names.index("r")
            elif len(bands) == data.shape[0] and "r" in bands:
                k = bands.index("r")
            else:
                k = 1 if data.shape[0] == 3 else 0
            data = data[k]
        from ..hosts.cutouts import pixel_scale_of

        scale = pixel_scale_of(hdr)
        if scale is None and "PIXSCALE" in hdr:
            scale = float(hdr["PIXSCALE"])
        return data, scale or REF_SCALE


def _npz_r_plane(path: Path) -> tuple[np.ndarray, float]:
    with np.load(path, allow_pickle=False) as z:
        key = "cutout" if "cutout" in z.files else next((k for k in z.files if np.ndim(z[k]) == 3), None)
        if key is None:
            raise AnchorError(f"anchors: {path} has no 'cutout' array (H, W, 3) or (3, H, W)")
        a = np.asarray(z[key], np.float64)
    if a.shape[-1] == 3 and a.shape[0] != 3:
        a = np.moveaxis(a, -1, 0)
    return a[1], REF_SCALE  # g r z order, as the DR10 cutout service writes


def read_anchor_cutouts(spec: str | list[str]) -> list[tuple[str, np.ndarray, float]]:
    """Read r-band planes of cutout files: a directory, a glob, a comma list or a list of paths.

    Returns ``(path, r_image, pixel_scale_arcsec)`` per file; ``.npz`` (key ``cutout``, grz) and
    ``.fits``/``.fits.gz``/``.fz`` (``(3, N, N)`` with BANDS/BANDn headers, or 2-D) are read.
    """
    return list(iter_anchor_cutouts(spec))


def iter_anchor_cutouts(spec: str | list[str]):
    """:func:`read_anchor_cutouts` one file at a time (memory: one cutout, whatever their number).
    The file list is checked (and a bad spec refused) before the first cutout is read."""
    paths = _anchor_paths(spec)
    for p in paths:
        path = Path(p)
        try:
            img, scale = _npz_r_plane(path) if path.suffix == ".npz" else _fits_r_plane(path)
        except AnchorError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # unreadable file
            raise AnchorError(f"anchors: {path} is not a readable cutout ({type(exc).__name__})") from None
        yield str(path), img, scale


def _anchor_paths(spec: str | list[str]) -> list[str]:
    paths: list[str] = []
    items = spec if isinstance(spec, list) else [s for s in str(spec).split(",") if s]
    for item in items:
        if os.path.isdir(item):
            for ext in ("*.npz", "*.fits", "*.fits.gz", "*.fz", "*.fit"):
                paths += sorted(glob.glob(os.path.join(item, "**", ext), recursive=True))
        elif any(ch in item for ch in "*?["):
            paths += sorted(glob.glob(item))
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise AnchorError(f"anchors: {item!r} is neither a file, a directory nor a glob that matches")
    if not paths:
        raise AnchorError(f"anchors: no .npz or .fits cutouts found in {spec!r}")
    return paths


def anchor_brightness(cutouts) -> np.ndarray:
    """Robust central brightness of each cutout, nanomaggy per 0.262" pixel (see module doc)."""
    vals = []
    for _, img, scale in cutouts:
        radius = CENTRAL_RADIUS_PX * REF_SCALE / scale
        size = min(img.shape)
        img = img[:size, :size]
        vals.append(float(central_brightness(img[None], radius_px=radius)[0]) * (REF_SCALE / scale) ** 2)
    return np.asarray(vals)


def cube_central_brightness(ds: xr.Dataset, *, progress: bool = False, chunk_pairs: int = 256) -> np.ndarray:
    """Robust central brightness of every host (control stamp, r band) of a cube, chunk by chunk.

    Parameters
    ----------
    ds
        A cube (dask-backed: its own pair chunks; numpy-backed: ``chunk_pairs`` pairs per task).
    progress
        Show a progress bar.
    chunk_pairs
        Pairs per task of a numpy-backed cube.

    Returns
    -------
    numpy.ndarray
        ``(pair,)`` nanomaggy per 0.262" pixel, as :func:`anchor_brightness`.
    """
    import dask
    import dask.array as da

    from ._compute import compute_tasks

    k = reference_band_index(ds["band"].values)
    scale = float(ds.attrs.get("pixel_scale", REF_SCALE))
    fn = dask.delayed(
        lambda h: (
            central_brightness(np.asarray(h, np.float64), radius_px=CENTRAL_RADIUS_PX * REF_SCALE / scale)
            * (REF_SCALE / scale) ** 2
        ),
        pure=True,
    )
    host = ds["host"].isel(band=k).data
    host = host if isinstance(host, da.Array) else da.from_array(np.asarray(host), chunks=(chunk_pairs, -1, -1))
    tasks = [fn(block) for block in host.rechunk({1: -1, 2: -1}).to_delayed().ravel()]
    return np.concatenate(compute_tasks(tasks, desc="diagnose: anchor cube", progress=progress))


#: Values resampled at once by the bootstrap (8 MiB of float64): memory stays flat in the number
#: of hosts (one (n_boot, n_hosts) draw at 50k hosts took 1.08 GiB).
_BOOT_BLOCK = 1 << 20


def _bootstrap_medians(rng: np.random.Generator, x: np.ndarray, n_boot: int) -> np.ndarray:
    """Medians of ``n_boot`` resamples of ``x``, drawn in row blocks; the same values as one
    ``rng.choice(x, (n_boot, x.size))`` draw (int64 bounded draws are sequential, unbuffered)."""
    rows = max(1, _BOOT_BLOCK // max(x.size, 1))
    return np.concatenate(
        [np.median(rng.choice(x, (min(rows, n_boot - i), x.size)), axis=1) for i in range(0, n_boot, rows)]
    )


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """Cliff's delta P(x > y) - P(x < y), from the Mann-Whitney U statistic (ties count half)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
    return float(2.0 * u / (x.size * y.size) - 1.0)


def compare_brightness(hosts: np.ndarray, anchors: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Hosts vs anchors central brightness: ratio of medians with 95 % bootstrap CI, KS, AD, Cliff's delta.

    Anchors whose central brightness is not positive (no coverage) are dropped and counted.
    The Anderson-Darling p-value of :func:`scipy.stats.anderson_ksamp` is capped to
    [0.001, 0.25] by scipy's interpolation table.
    """
    h = np.asarray(hosts, float)
    a = np.asarray(anchors, float)
    # A central median <= 0 means no coverage (zero-filled cutout areas), not a galaxy.
    n_dropped = int(np.sum(~(np.isfinite(a) & (a > 0))))
    h, a = h[np.isfinite(h)], a[np.isfinite(a) & (a > 0)]
    if h.size < 2 or a.size < 2:
        raise AnchorError(
            f"anchors: need >= 2 finite brightness values on each side (hosts {h.size}, anchors {a.size})"
        )
    rng = np.random.default_rng(seed)
    boots = _bootstrap_medians(rng, h, n_boot) / _bootstrap_medians(rng, a, n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad = stats.anderson_ksamp([h, a])
    return {
        "n_hosts": int(h.size),
        "n_anchors": int(a.size),
        "n_anchors_dropped_no_coverage": n_dropped,
        "host_median": float(np.median(h)),
        "anchor_median": float(np.median(a)),
        "ratio_of_medians": float(np.median(h) / np.median(a)),
        "ratio_ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
        "ks_stat": float(stats.ks_2samp(h, a).statistic),
        "ks_pvalue": float(stats.ks_2samp(h, a).pvalue),
        "ad_stat": float(ad.statistic),
        "ad_pvalue": float(ad.pvalue),
        "cliffs_delta": cliffs_delta(h, a),
        "unit": "nanomaggy per 0.262 arcsec pixel, median within r < 2.1 arcsec (r band)",
    }
