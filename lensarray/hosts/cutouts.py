"""Real host cutouts: readers (FITS, npz/npy, parquet), a host cube on Zarr, and ``HostCube``.

A host cube has dims ``(host_index, band, y, x)`` and the host variables of the main cube (``host``,
``invvar``, ``maskbits``, ``ra``, ``dec``, ``brickname``, ``psf_fwhm``, ``psfdepth``,
``host_mag``, ``host_id``) plus ``invvar_estimated`` and ``source`` (file name). Attribute
``kind = "lensarray-hosts"`` marks it. ``lensarray build --hosts URL`` injects arcs into it.

Every file is checked before it is accepted: readable, image planes for every requested band in
the right order, the survey pixel scale, finite pixels, large enough for the stamp. A rejected
file is reported with its reason and counted, never silently dropped.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..geometry import radius_grid

__all__ = ["Cutout", "IngestReport", "read_cutouts", "ingest", "HostCube", "HOST_SCHEMA_VERSION", "DEFAULT_PSF_FWHM"]

HOST_SCHEMA_VERSION = 1

#: Sanity cap on the hosts of one host cube (its declared size drives the per-host tables read).
MAX_HOSTS = 100_000_000

#: DR10 median PSF FWHM per band, arcsec (../shared/data/observing_conditions: r 1.37"; g ~1.5";
#: z ~1.35"), used when a cutout carries no PSF information.
DEFAULT_PSF_FWHM = {"g": 1.5, "r": 1.37, "i": 1.3, "z": 1.35}


class IngestError(BadInputError):
    """One input file cannot be used; the message says why."""


@dataclass
class Cutout:
    """One host cutout in the survey's units (nanomaggy), bands first."""

    image: np.ndarray  # (band, y, x) float32
    invvar: np.ndarray | None
    maskbits: np.ndarray | None
    ra: float
    dec: float
    pixel_scale: float
    source: str
    brickname: str = ""
    psf_fwhm: np.ndarray | None = None


@dataclass
class IngestReport:
    """What ingest did with every input."""

    accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"accepted {len(self.accepted)}, rejected {len(self.rejected)}"]
        out += [f"  rejected {src}: {why}" for src, why in self.rejected]
        return out


# ----------------------------------------------------------------------------------------
# readers
# ----------------------------------------------------------------------------------------
def _fits_bands(header) -> list[str] | None:
    if header.get("BANDS"):
        return list(str(header["BANDS"]).strip())
    names = [header.get(f"BAND{i}") for i in range(8)]
    names = [str(n).strip() for n in names if n]
    return names or None


def pixel_scale_of(header) -> float | None:
    """Pixel scale, arcsec, from the celestial WCS (``proj_plane_pixel_scales``: right for a
    rotated CD matrix, whose CD2_2 alone is scale * cos(rotation)); None without a WCS."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(header, naxis=2)
        if w.has_celestial:
            scales = proj_plane_pixel_scales(w.celestial) * 3600.0  # deg -> arcsec (CUNIT deg)
            if np.all(np.isfinite(scales)) and np.all(scales > 0):
                return float(np.sqrt(scales[0] * scales[1]))
    except Exception:  # a header astropy cannot parse: fall back to the plain keywords
        pass
    for key in ("CD2_2", "CDELT2"):
        if header.get(key):
            return abs(float(header[key])) * 3600.0
    return None


def _centre_radec(header, shape) -> tuple[float, float]:
    from astropy.wcs import WCS

    try:
        w = WCS(header, naxis=2)
        ra, dec = w.wcs_pix2world([[(shape[-1] - 1) / 2.0, (shape[-2] - 1) / 2.0]], 0)[0]
        return float(ra), float(dec)
    except Exception:
        return float(header.get("CRVAL1", np.nan)), float(header.get("CRVAL2", np.nan))


def _read_fits(path: Path, bands: list[str]) -> list[Cutout]:
    from astropy.io import fits

    try:
        hdul = fits.open(path, memmap=False)
    except OSError as exc:
        raise IngestError(f"not a FITS file ({exc})") from None
    with hdul:
        names = [h.name for h in hdul]
        # DES-style coadd: SCI + WGT extensions, one band per file (FILTER keyword)
        if "SCI" in names:
            sci = hdul["SCI"]
            h = sci.header
            band = str(h.get("FILTER", "?")).strip()[:1]
            zp = float(h.get("MAGZERO", 22.5))
            scale = 10 ** (-0.4 * (zp - 22.5))  # counts -> nanomaggy
            img = np.asarray(sci.data, dtype=np.float64) * scale
            iv = None
            if "WGT" in names:
                iv = np.asarray(hdul["WGT"].data, dtype=np.float64) / scale**2
            ra, dec = _centre_radec(h, img.shape)
            return [
                Cutout(
                    img[None].astype(np.float32),
                    None if iv is None else iv[None].astype(np.float32),
                    None,
                    ra,
                    dec,
                    pixel_scale_of(h) or np.nan,
                    str(path),
                    psf_fwhm=None,
                    brickname=band,
                )
            ]
        primary = next((h for h in hdul if h.data is not None and h.data.ndim == 3), None)
        if primary is None:
            raise IngestError("no 3-plane (band, y, x) image HDU")
        h = primary.header
        file_bands = _fits_bands(h)
        data = np.asarray(primary.data, dtype=np.float32)
        if file_bands is None:
            raise IngestError("header names no bands (BANDS or BAND0..): cannot check band order")
        if data.shape[0] != len(file_bands):
            raise IngestError(f"{data.shape[0]} image planes but header names bands {file_bands}")
        missing = [b for b in bands if b not in file_bands]
        if missing:
            raise IngestError(f"missing band(s) {missing}; file has {file_bands}")
        idx = [file_bands.index(b) for b in bands]
        iv = None
        mb = None
        for hdu in hdul:
            n = hdu.name.upper()
            if hdu.data is None:
                continue
            if n in ("INVVAR", "IVAR"):
                if hdu.data.shape != data.shape:
                    raise IngestError(f"{n} plane shape {hdu.data.shape} differs from the image {data.shape}")
                iv = np.asarray(hdu.data, dtype=np.float32)[idx]
            if n == "MASKBITS":
                mb = np.asarray(hdu.data, dtype=np.int32)
        ra, dec = _centre_radec(h, data.shape)
        return [Cutout(data[idx], iv, mb, ra, dec, pixel_scale_of(h) or np.nan, str(path))]


def _read_npz(path: Path, bands: list[str], pixel_scale: float) -> list[Cutout]:
    try:
        if path.suffix == ".npy":
            arrays = {"cutout": np.load(path, allow_pickle=False)}
        else:
            arrays = dict(np.load(path, allow_pickle=False))
    except Exception as exc:
        raise IngestError(f"not a readable npz/npy file ({type(exc).__name__})") from None
    key = next((k for k in ("cutout", "image", "stamp", "images") if k in arrays), None)
    if key is None:
        raise IngestError(f"no image array (looked for cutout/image/stamp); keys {sorted(arrays)[:6]}")
    img = np.asarray(arrays[key], dtype=np.float32)
    nb = len(bands)
    if img.ndim == 4:
        stack = img
    elif img.ndim == 3:
        stack = img[None]
    else:
        raise IngestError(f"image array has shape {img.shape}: allowed (y, x, band), (band, y, x) or a stack")
    out = []
    for k, im in enumerate(stack):
        if im.shape[-1] == nb and im.shape[0] != nb:
            im = np.moveaxis(im, -1, 0)  # HWC -> CHW (the earlier pipeline's layout)
        elif im.shape[0] != nb:
            raise IngestError(f"image shape {im.shape}: neither axis 0 nor axis -1 holds {nb} bands {bands}")
        meta = {k2[5:]: arrays[k2] for k2 in arrays if k2.startswith("meta_")}
        file_bands = str(meta.get("bands_requested", "".join(bands)))
        if sorted(file_bands) == sorted(bands) and list(file_bands) != bands:
            im = im[[list(file_bands).index(b) for b in bands]]
        elif len(file_bands) != nb:
            raise IngestError(f"file bands {file_bands!r} do not match {bands}")
        iv = arrays.get("invvar")
        if iv is not None:
            iv = np.asarray(iv, dtype=np.float32)
            if iv.ndim == 3 and iv.shape[-1] == nb and iv.shape[0] != nb:
                iv = np.moveaxis(iv, -1, 0)
        scale = float(meta.get("pixel_scale", pixel_scale))
        ra = float(meta.get("ra", np.nan))
        dec = float(meta.get("dec", np.nan))
        name = f"{path}" if len(stack) == 1 else f"{path}[{k}]"
        out.append(Cutout(im, iv, None, ra, dec, scale, name, brickname=str(meta.get("brickname", ""))))
    return out


def _read_parquet(path: Path, bands: list[str], pixel_scale: float) -> list[Cutout | IngestError]:
    """Parquet with one row per host: ``stamp`` (flattened float32 (band, y, x), or npz bytes),
    optional ``invvar`` alike, ``size`` (side), ``ra``, ``dec``, ``brickname``. A bad row is an
    :class:`IngestError` in the list (that row is rejected, the others are read)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path).to_pylist()
    except Exception as exc:
        raise IngestError(f"not a readable parquet table ({type(exc).__name__})") from None
    out: list[Cutout | IngestError] = []
    for i, row in enumerate(table):
        stamp = row.get("stamp") if "stamp" in row else row.get("stamp_npz")
        if stamp is None:
            raise IngestError("no 'stamp' or 'stamp_npz' column")
        if isinstance(stamp, (bytes, bytearray)):
            with np.load(io.BytesIO(stamp)) as z:
                arr = np.asarray(z[z.files[0]], dtype=np.float32)
        else:
            arr = np.asarray(stamp, dtype=np.float32)
            side = int(row.get("size") or round((arr.size / len(bands)) ** 0.5))
            if arr.size != len(bands) * side * side:
                out.append(IngestError(f"row {i}: stamp has {arr.size} values, expected {len(bands)}x{side}x{side}"))
                continue
            arr = arr.reshape(len(bands), side, side)
        if arr.ndim == 3 and arr.shape[-1] == len(bands) and arr.shape[0] != len(bands):
            arr = np.moveaxis(arr, -1, 0)
        iv = row.get("invvar")
        if iv is not None:
            iv = np.asarray(iv, dtype=np.float32).reshape(arr.shape)
        out.append(
            Cutout(
                arr,
                iv,
                None,
                float(row.get("ra", np.nan) or np.nan),
                float(row.get("dec", np.nan) or np.nan),
                float(row.get("pixel_scale", pixel_scale) or pixel_scale),
                f"{path}[{i}]",
                brickname=str(row.get("brickname", "") or ""),
            )
        )
    return out


def read_cutouts(
    paths: Iterable[str | Path], *, bands: Sequence[str] = ("g", "r", "z"), pixel_scale: float = 0.262
) -> Iterator[tuple[str, Cutout | None, str]]:
    """Yield ``(source, Cutout | None, reason)`` for every input; DES-style single-band coadds
    (``*_g.fits``, ``*_r.fits``, ...) in one folder are merged into one multi-band cutout."""
    bands = list(bands)
    singles: dict[str, dict[str, Cutout]] = {}
    for p in paths:
        path = Path(p)
        cuts: list[Cutout] | list[Cutout | IngestError]
        try:
            if path.suffix.lower() in (".fits", ".fit", ".fz") or path.name.endswith(".fits.gz"):
                cuts = _read_fits(path, bands)
            elif path.suffix.lower() in (".npz", ".npy"):
                cuts = _read_npz(path, bands, pixel_scale)
            elif path.suffix.lower() == ".parquet":
                cuts = _read_parquet(path, bands, pixel_scale)
            else:
                raise IngestError(f"unknown file type {path.suffix!r}: allowed .fits, .npz, .npy, .parquet")
        except IngestError as exc:
            yield str(path), None, str(exc)
            continue
        for c in cuts:
            if isinstance(c, IngestError):
                yield str(path), None, str(c)
            elif c.image.shape[0] == 1 and len(bands) > 1:  # single-band coadd: merge later
                key = str(path.parent / path.name.rsplit("_", 1)[0])
                singles.setdefault(key, {})[c.brickname] = c
            else:
                yield c.source, c, ""
    for key, per_band in singles.items():
        missing = [b for b in bands if b not in per_band]
        if missing:
            yield key, None, f"single-band files lack band(s) {missing}"
            continue
        first = per_band[bands[0]]
        shapes = {per_band[b].image.shape for b in bands}
        if len(shapes) != 1:
            yield key, None, f"single-band files differ in shape {sorted(shapes)}"
            continue
        img = np.concatenate([per_band[b].image for b in bands])
        iv = (
            None
            if any(per_band[b].invvar is None for b in bands)
            else np.concatenate([per_band[b].invvar for b in bands])
        )
        yield (
            f"{key}_[{''.join(bands)}].fits",
            Cutout(img, iv, None, first.ra, first.dec, first.pixel_scale, f"{key}_[{''.join(bands)}].fits"),
            "",
        )


# ----------------------------------------------------------------------------------------
# checks and stamp preparation
# ----------------------------------------------------------------------------------------
def _crop(a: np.ndarray, size: int) -> np.ndarray:
    """Crop (or zero-pad) the last two axes to ``size`` about the centre pixel (n//2)."""
    h, w = a.shape[-2:]
    out = np.zeros(a.shape[:-2] + (size, size), dtype=a.dtype)
    cy, cx, c = h // 2, w // 2, size // 2
    y0, x0 = max(cy - c, 0), max(cx - c, 0)
    y1, x1 = min(cy - c + size, h), min(cx - c + size, w)
    oy, ox = y0 - (cy - c), x0 - (cx - c)
    out[..., oy : oy + y1 - y0, ox : ox + x1 - x0] = a[..., y0:y1, x0:x1]
    return out


def _robust_sigma(img: np.ndarray) -> float:
    v = img[np.isfinite(img)]
    med = np.median(v)
    return float(1.4826 * np.median(np.abs(v - med)))


def _check_invvar(c: Cutout, iv: np.ndarray) -> None:
    """The inverse-variance plane ``iv`` of ``c`` must match the image and be finite and >= 0 (0 = no data)."""
    if iv.shape != c.image.shape:
        raise IngestError(f"invvar shape {iv.shape} differs from the image {c.image.shape}")
    if not np.isfinite(iv).all():
        raise IngestError(f"invvar has {int((~np.isfinite(iv)).sum())} NaN/inf pixels (allowed finite, >= 0)")
    if (iv < 0).any():
        raise IngestError(f"invvar has {int((iv < 0).sum())} negative pixels (allowed finite, >= 0; 0 = no data)")


def _prepare(c: Cutout, size: int, pixel_scale: float, bands: list[str], psf_fwhm: dict) -> dict:
    if c.invvar is not None:
        _check_invvar(c, c.invvar)
    if np.isfinite(c.pixel_scale) and abs(c.pixel_scale - pixel_scale) > 0.01 * pixel_scale:
        raise IngestError(
            f'pixel scale {c.pixel_scale:.3f}"/pix; allowed {pixel_scale}"/pix +/- 1% (resample it first)'
        )
    if min(c.image.shape[-2:]) < size // 2:
        raise IngestError(f"image {c.image.shape[-2:]} is smaller than half the stamp ({size} px)")
    if not np.isfinite(c.image).all():
        frac = 1 - np.isfinite(c.image).mean()
        raise IngestError(f"{frac:.1%} NaN/inf pixels")
    img = _crop(c.image, size)
    estimated = c.invvar is None
    if c.invvar is None:
        # outer region (outside r = size/3) of each band: robust sky sigma -> constant invvar
        outer = radius_grid(size) > size / 3
        sig = np.array([_robust_sigma(img[b][outer]) for b in range(img.shape[0])])
        if np.any(sig <= 0):
            raise IngestError("sky noise is zero in some band (constant image?): cannot estimate invvar")
        iv = np.broadcast_to((1.0 / sig**2)[:, None, None], img.shape).astype(np.float32).copy()
    else:
        iv = _crop(c.invvar, size).astype(np.float32)
    zero_cov = np.all(img == 0, axis=0) & (iv.min(axis=0) > 0)
    if zero_cov.mean() > 0.3:
        raise IngestError(f"{zero_cov.mean():.0%} of the stamp is exactly zero (no coverage)")
    iv[:, zero_cov] = 0.0
    mb = _crop(c.maskbits, size).astype(np.int32) if c.maskbits is not None else np.zeros((size, size), np.int32)
    fwhm = np.array([psf_fwhm.get(b, DEFAULT_PSF_FWHM.get(b, 1.4)) for b in bands], dtype=np.float32)
    # 5-sigma point-source depth from the median invvar and a Gaussian PSF's noise-equivalent area
    sig_pix = 1.0 / np.sqrt(np.median(np.where(iv > 0, iv, np.nan).reshape(len(bands), -1), axis=1))
    nea = 4 * np.pi * (fwhm / 2.3548 / pixel_scale) ** 2
    depth = 22.5 - 2.5 * np.log10(5 * sig_pix * np.sqrt(nea))
    ap = radius_grid(size) < min(10, size // 2)
    sky = np.median(img[:, ~ap], axis=1)
    flux = (img[:, ap] - sky[:, None]).sum(axis=1)
    mag = np.where(flux > 0, 22.5 - 2.5 * np.log10(np.clip(flux, 1e-12, None)), np.nan)
    ra, dec = c.ra, c.dec
    brick = c.brickname
    if (not brick or len(brick) != 8) and np.isfinite(ra) and np.isfinite(dec):
        try:
            from .bricks import brickname_of

            brick = str(brickname_of(np.array([ra]), np.array([dec]))[0])
        except ImportError:
            brick = ""
    return {
        "host": img.astype(np.float32),
        "invvar": iv,
        "maskbits": mb,
        "ra": ra,
        "dec": dec,
        "brickname": brick,
        "psf_fwhm": fwhm,
        "psfdepth": depth.astype(np.float32),
        "host_mag": mag.astype(np.float32),
        "invvar_estimated": estimated,
        "source": c.source,
    }


# ----------------------------------------------------------------------------------------
# host cube
# ----------------------------------------------------------------------------------------
def ingest(
    paths,
    out: str,
    *,
    size: int = 64,
    bands=("g", "r", "z"),
    pixel_scale: float = 0.262,
    psf_fwhm: dict | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    batch: int = 256,
    progress: bool = False,
) -> IngestReport:
    """Build a host cube at ``out`` from cutout files, streaming ``batch`` hosts at a time.

    Returns an :class:`IngestReport`; raises :class:`IngestError` when no file is usable. Every
    input is checked before an existing ``out`` is touched, and ``overwrite`` replaces only a
    host cube (never a lens cube or anything else). ``progress`` shows one bar per pass over the
    input files (check, then write); off by default (the CLI turns it on).
    """
    import xarray as xr
    import zarr
    from tqdm.auto import tqdm

    paths = list(paths)

    def files(desc: str):
        return tqdm(paths, desc=f"ingest: {desc}", unit="file", disable=not progress, file=sys.stderr)

    from ..storage import zarr_array
    from ..store import StoreExistsError, check_removable, remove_store, store_exists, zarr_store

    bands = list(bands)
    psf_fwhm = psf_fwhm or {}
    report = IngestReport()
    exists = store_exists(out, storage_options)
    if exists:
        if not overwrite:
            raise StoreExistsError(f"{out} already exists: pass --overwrite to replace it")
        check_removable(out, storage_options, kind="hosts")  # only a host cube, refused before any input is read
    # pass 1: check every file (cheap for cutouts), keep the accepted list
    accepted = []
    for src, cut, why in read_cutouts(files("check"), bands=bands, pixel_scale=pixel_scale):
        if cut is None:
            report.rejected.append((src, why))
            continue
        try:
            _prepare(cut, size, pixel_scale, bands, psf_fwhm)
        except IngestError as exc:
            report.rejected.append((src, str(exc)))
            continue
        accepted.append(src)
    report.accepted = accepted
    if not accepted:
        raise IngestError(
            "no usable cutout among the inputs: " + "; ".join(f"{s}: {w}" for s, w in report.rejected[:5])
        )
    if exists:  # inputs are good: only now is the old host cube replaced
        remove_store(out, storage_options, kind="hosts")
    n, nb = len(accepted), len(bands)
    ds = xr.Dataset(
        {
            "host": (("host_index", "band", "y", "x"), np.zeros((n, nb, size, size), np.float32)),
            "invvar": (("host_index", "band", "y", "x"), np.zeros((n, nb, size, size), np.float32)),
            "maskbits": (("host_index", "y", "x"), np.zeros((n, size, size), np.int32)),
            "ra": ("host_index", np.zeros(n)),
            "dec": ("host_index", np.zeros(n)),
            "brickname": ("host_index", np.full(n, "", dtype="<U8")),
            "psf_fwhm": (("host_index", "band"), np.zeros((n, nb), np.float32)),
            "psfdepth": (("host_index", "band"), np.zeros((n, nb), np.float32)),
            "host_mag": (("host_index", "band"), np.zeros((n, nb), np.float32)),
            "host_id": ("host_index", np.arange(n, dtype=np.int64)),
            "invvar_estimated": ("host_index", np.zeros(n, bool)),
            "source": ("host_index", np.array(accepted, dtype=f"<U{max(len(a) for a in accepted)}")),
        },
        coords={"host_index": np.arange(n, dtype=np.int64), "band": np.array(bands)},
        attrs={
            "kind": "lensarray-hosts",
            "host_schema_version": HOST_SCHEMA_VERSION,
            "pixel_scale": pixel_scale,
            "unit": "nanomaggy",
            "size": size,
            "bands": json.dumps(bands),
            "psf_fwhm_note": "DR10 median per band unless given (cutouts carry no PSF)",
        },
    )
    import dask.array as da

    lazy = ds.copy()
    for name in ("host", "invvar", "maskbits"):
        lazy[name] = lazy[name].copy(
            data=da.zeros(ds[name].shape, dtype=ds[name].dtype, chunks=(16,) + ds[name].shape[1:])
        )
    store = zarr_store(out, storage_options)
    lazy[["host", "invvar", "maskbits"]].to_zarr(store, compute=False, zarr_format=3, mode="w-", consolidated=False)
    group = zarr.open_group(store, mode="r+", zarr_format=3)
    pixels = {k: zarr_array(group, k) for k in ("host", "invvar", "maskbits")}
    # pass 2: write pixel batches, then the small per-host table in one go
    sel = set(accepted)
    i = 0
    buf: dict[str, list] = {k: [] for k in ("host", "invvar", "maskbits")}
    for src, cut, _ in read_cutouts(files("write"), bands=bands, pixel_scale=pixel_scale):
        if cut is None or src not in sel:
            continue
        p = _prepare(cut, size, pixel_scale, bands, psf_fwhm)
        for k in buf:
            buf[k].append(p[k])
        for k in ("ra", "dec", "brickname", "psf_fwhm", "psfdepth", "host_mag", "invvar_estimated"):
            ds[k].values[i] = p[k]
        i += 1
        if len(buf["host"]) == batch:
            for k in buf:
                pixels[k][i - batch : i] = np.stack(buf[k])
                buf[k] = []
    if buf["host"]:
        m = len(buf["host"])
        for k in buf:
            pixels[k][i - m : i] = np.stack(buf[k])
    table = ds.drop_vars(["host", "invvar", "maskbits"])
    table.to_zarr(store, mode="a", zarr_format=3, consolidated=False)
    return report


class HostCube:
    """Read access to a host cube for the pipeline (``take`` returns what synthetic hosts return).

    Parameters
    ----------
    url
        Local path or fsspec URL of a host cube written by :func:`ingest`.
    storage_options
        fsspec options (default: from the environment, as :func:`lensarray.storage.storage_options_from`).
    field
        Name of the flag or configuration field the URL came from, for error messages.
    """

    def __init__(self, url: str, storage_options: dict | None = None, *, field: str = "hosts.source"):
        import xarray as xr

        from ..storage import StorageError, check_source, storage_options_from
        from ..store import zarr_store

        self.url = url
        if storage_options is None:
            storage_options = storage_options_from()
        try:
            check_source(url, storage_options, what=field)
        except StorageError as exc:
            raise IngestError(str(exc)) from None
        try:
            self.ds = xr.open_zarr(zarr_store(url, storage_options, read_only=True), consolidated=False, zarr_format=3)
        except Exception as exc:
            raise IngestError(f"{field} = {url!r}: not a readable host cube ({type(exc).__name__})") from None
        if self.ds.attrs.get("kind") != "lensarray-hosts":
            raise IngestError(
                f"{field} = {url!r}: not a lensarray host cube (allowed a cube made by `lensarray ingest`)"
            )
        need = ("host", "invvar", "maskbits", "ra", "dec", "brickname", "psf_fwhm", "psfdepth", "host_mag", "host_id")
        missing = [k for k in need if k not in self.ds.variables]
        if missing or "host_index" not in self.ds.sizes or self.ds.sizes["host_index"] > MAX_HOSTS:
            raise IngestError(
                f"{field} = {url!r}: damaged host cube (missing {missing} or more than {MAX_HOSTS} hosts)"
            )
        self._table = {
            k: self.ds[k].values for k in ("ra", "dec", "brickname", "psf_fwhm", "psfdepth", "host_mag", "host_id")
        }

    @property
    def n_hosts(self) -> int:
        return int(self.ds.sizes["host_index"])

    def properties(self, host_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Per-host facts for ``host_ids`` (no pixels)."""
        ids = np.asarray(host_ids, dtype=np.int64)
        out = {k: v[ids] for k, v in self._table.items()}
        out["host_reff"] = np.full(ids.size, np.nan, np.float32)
        return out

    def take(self, host_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Pixels and facts for ``host_ids`` (may repeat; any order)."""
        ids = np.asarray(host_ids, dtype=np.int64)
        uniq, inv = np.unique(ids, return_inverse=True)
        part = self.ds[["host", "invvar", "maskbits"]].isel(host_index=uniq).compute()
        out = self.properties(ids)
        for k in ("host", "invvar", "maskbits"):
            out[k] = np.asarray(part[k].values)[inv]
        return out


def expand_inputs(items, *, pattern: str = "*") -> list[str]:
    """Files from paths, directories (recursively, file names matching ``pattern``) and globs,
    sorted, de-duplicated. Hidden files and folders (``.name``) inside a directory are skipped."""
    import glob

    out = []
    for item in items:
        if os.path.isdir(item):
            root = Path(item)
            out += sorted(
                str(p)
                for p in root.rglob(pattern)
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
            )
        elif any(ch in item for ch in "*?["):
            out += sorted(glob.glob(item))
        else:
            out.append(item)
    return list(dict.fromkeys(out))  # de-duplicated, first occurrence kept
