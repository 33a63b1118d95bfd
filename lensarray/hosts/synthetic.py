"""Synthetic DR10-like LRG hosts: the embedded default (no data needed).

Every number below comes from ``../shared/data`` (see docs/synthetic_hosts.md; a test re-derives
them from the files when present):

- type mix and profiles: DESI DR9 LRG mock models (``lrg_models_dr9``): DEV (n = 4) hosts with
  r mag 5/50/95% = 19.3/21.0/22.8 and half-light radius 0.45/1.06/2.6"; SER hosts with
  r 18.4/19.6/21.0 and 0.75/1.7/3.7"; median axis ratio ~0.63. Hosts are drawn from the two
  lognormal/normal fits below and kept within ``hosts.r_mag_min .. r_mag_max``.
- colours: LRG g - r ~ 1.6 +/- 0.25, r - z ~ 1.1 +/- 0.2 (DESI LRG colour cuts select
  r - z > ~0.9 red galaxies at 0.4 < z < 1).
- seeing: DR10 brick medians, r-band FWHM 5/16/50/84/95% = 1.12/1.20/1.37/1.59/1.77"
  (lognormal, median 1.37", sigma_ln 0.14); g ~ 1.095 x r, z ~ 0.97 x r, each with 5% scatter.
- depth (5-sigma point source, AB): bimodal DECaLS / DES; g 24.8 / 25.35, r 24.2 / 25.1,
  z 23.35 / 23.9 (DES for Dec < -25 deg here, 0.25 mag scatter).
- noise: per-pixel sky sigma = (5-sigma depth flux / 5) / sqrt(NEA), NEA = 4 pi sigma_psf^2
  pixels for a Gaussian PSF; invvar varies by +/- 5% across the stamp (a gradient).
- mask bits (``hosts.mask_rate`` of hosts): Legacy Surveys MASKBITS: BRIGHT (1) halo disc,
  SATUR_G/R/Z (2-4) + ALLMASK_G/R/Z (5-7) blob with invvar 0, or an edge strip with no data
  (invvar 0, pixels 0).

Pixels: each galaxy is a mixture of Gaussians convolved analytically with the PSF and evaluated on
the pixel grid (:mod:`lensarray.hosts.mog`; Hogg & Lang 2013, the Tractor's approach), no FFT;
0.3% of the peak from a converged FFT reference. Noise: float32 standard normals drawn straight
into a buffer (numpy's fastest generator path), one stream per pair.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from ..errors import BadInputError
from ..physics.photometry import mag_to_nmgy, psfdepth_mag_to_sigma
from ..physics.psf import FWHM_TO_SIGMA
from ..quantize import round_mantissa
from ..rng import Stream, pair_rng, pair_uniforms
from .bricks import brickname_of
from .mog import render_galaxies

__all__ = ["synthetic_host_properties", "synthetic_hosts", "CALIBRATION", "HOST_FACTS"]

#: Calibration numbers and their provenance (../shared/data; docs/synthetic_hosts.md).
CALIBRATION: dict[str, Any] = {
    "dev_fraction": 0.5,
    "dev_r_mag": (21.0, 1.06),  # normal (median, sigma) from 5/50/95% = 19.3/21.0/22.8
    "ser_r_mag": (19.6, 0.79),  # 18.4/19.6/21.0
    "dev_reff": (1.06, 0.545),  # lognormal (median arcsec, sigma_ln) from 0.45/1.06/2.6"
    "ser_reff": (1.70, 0.47),  # 0.75/1.7/3.7"
    "ser_n": (2.0, 5.0),  # uniform Sersic index for SER hosts
    "q": (0.35, 0.95),  # uniform axis ratio, median ~0.65 (models: 0.64 DEV, 0.61 SER)
    "g_r": (1.6, 0.25),
    "r_z": (1.1, 0.20),
    "psf_r": (1.37, 0.14),  # lognormal median arcsec, sigma_ln
    "psf_ratio": {"g": 1.095, "r": 1.0, "i": 0.99, "z": 0.97},
    "depth_decals": {"g": 24.8, "r": 24.2, "i": 23.8, "z": 23.35},
    "depth_des": {"g": 25.35, "r": 25.1, "i": 24.6, "z": 23.9},
    "depth_sigma": 0.25,
    "des_dec_max": -25.0,
    "dec_range": (-65.0, 32.0),
    "min_abs_b": 18.0,
}

_ALPHA_NGP, _DELTA_NGP = np.radians(192.85948), np.radians(27.12825)
_K = 16  # uniforms per pair in the HOST_PROPS stream (fixed: never reuse a column)


def _galactic_b(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    sb = np.sin(dec) * np.sin(_DELTA_NGP) + np.cos(dec) * np.cos(_DELTA_NGP) * np.cos(ra - _ALPHA_NGP)
    return np.degrees(np.arcsin(np.clip(sb, -1, 1)))


def _sky_positions(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the sphere within the Dec range, |b| > min_abs_b; 4 tries from 8 uniforms."""
    lo, hi = np.sin(np.radians(CALIBRATION["dec_range"]))
    n = u.shape[0]
    ra = np.full(n, np.nan)
    dec = np.full(n, np.nan)
    todo = np.arange(n)
    for t in range(4):
        # only the positions still without an accepted try are drawn again (elementwise, so a
        # position's value does not depend on which others are drawn with it)
        r_t = 360.0 * u[todo, 2 * t]
        d_t = np.degrees(np.arcsin(lo + (hi - lo) * u[todo, 2 * t + 1]))
        ok = np.abs(_galactic_b(r_t, d_t)) > CALIBRATION["min_abs_b"]
        ra[todo[ok]], dec[todo[ok]] = r_t[ok], d_t[ok]
        todo = todo[~ok]
    # rare: keep the last draw
    ra[todo], dec[todo] = 360.0 * u[todo, 6], np.degrees(np.arcsin(lo + (hi - lo) * u[todo, 7]))
    return ra, dec


#: Host facts :func:`synthetic_host_properties` returns, in its order.
HOST_FACTS = (
    "ra",
    "dec",
    "brickname",
    "psf_fwhm",
    "psfdepth",
    "host_mag",
    "host_reff",
    "host_n",
    "host_e1",
    "host_e2",
    "host_id",
)
_GALAXY_FACTS = frozenset({"host_mag", "host_reff", "host_n", "host_e1", "host_e2"})
_SKY_FACTS = frozenset({"ra", "dec", "brickname", "psfdepth"})  # the depth depends on Dec (DES)


def _unit_open(u: np.ndarray) -> np.ndarray:
    """Uniforms kept off 0 and 1, where the inverse normal CDF is infinite."""
    return np.clip(u, 1e-12, 1 - 1e-12)


def _galaxy_facts(u: np.ndarray, cfg, bands: list[str]) -> dict[str, np.ndarray]:
    """Magnitudes, size, profile and shape of the host galaxies from HOST_PROPS columns 8..15."""
    c = CALIBRATION
    dev = u[:, 8] < c["dev_fraction"]
    mu_m = np.where(dev, c["dev_r_mag"][0], c["ser_r_mag"][0])
    sd_m = np.where(dev, c["dev_r_mag"][1], c["ser_r_mag"][1])

    # truncated normal by inverse CDF on the allowed magnitude range; the CDF at the range ends
    # has one value per host type
    def cdf_at(r_mag: float) -> np.ndarray:
        return np.where(
            dev,
            ndtr((r_mag - c["dev_r_mag"][0]) / c["dev_r_mag"][1]),
            ndtr((r_mag - c["ser_r_mag"][0]) / c["ser_r_mag"][1]),
        )

    lo, hi = cdf_at(cfg.hosts.r_mag_min), cdf_at(cfg.hosts.r_mag_max)
    r_mag = mu_m + sd_m * ndtri(_unit_open(lo + (hi - lo) * u[:, 9]))
    med_re = np.where(dev, c["dev_reff"][0], c["ser_reff"][0])
    sig_re = np.where(dev, c["dev_reff"][1], c["ser_reff"][1])
    # brighter hosts are larger: shift the size by the magnitude offset (~0.25 dex per mag)
    reff = np.clip(med_re * np.exp(sig_re * ndtri(u[:, 10]) - 0.2 * (r_mag - mu_m)), 0.3, 6.0)
    n_sersic = np.where(dev, 4.0, c["ser_n"][0] + (c["ser_n"][1] - c["ser_n"][0]) * u[:, 11])
    q = c["q"][0] + (c["q"][1] - c["q"][0]) * u[:, 12]
    ang = np.pi * u[:, 13]
    e = (1 - q) / (1 + q)
    g_r = c["g_r"][0] + c["g_r"][1] * np.clip(ndtri(u[:, 14]), -2.5, 2.5)
    r_z = c["r_z"][0] + c["r_z"][1] * np.clip(ndtri(u[:, 15]), -2.5, 2.5)
    offsets = {"g": g_r, "r": 0.0 * g_r, "i": -0.5 * r_z, "z": -r_z}
    return {
        "host_mag": np.stack([r_mag + offsets[b] for b in bands], axis=1).astype(np.float32),
        "host_reff": reff.astype(np.float32),
        "host_n": n_sersic.astype(np.float32),
        "host_e1": (e * np.cos(2 * ang)).astype(np.float32),
        "host_e2": (e * np.sin(2 * ang)).astype(np.float32),
    }


def synthetic_host_properties(
    pair_ids: np.ndarray, cfg, *, fields: Collection[str] | None = None, bands: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Host facts for ``pair_ids`` (no pixels; cheap enough to run over every pair).

    Parameters
    ----------
    pair_ids
        Pair ids (int64).
    cfg
        :class:`lensarray.config.RunConfig` (``run.seed``, ``run.bands``, ``hosts``).
    fields
        The facts to return (a subset of :data:`HOST_FACTS`; default all). A fact's values do
        not depend on which others are asked for: the split planner asks only for what it reads.
    bands
        The bands (of ``run.bands``, any order) of the per-band facts ``psf_fwhm``,
        ``psfdepth``, ``host_mag``; default ``run.bands``. A band's values do not depend on
        which others are asked for.

    Returns
    -------
    dict
        ``ra``, ``dec`` (deg), ``brickname``, ``psf_fwhm``, ``psfdepth`` (AB) per band,
        ``host_mag`` (AB) per band, ``host_reff`` (arcsec), ``host_n``, ``host_e1``, ``host_e2``,
        ``host_id`` (those asked for).
    """
    want = set(HOST_FACTS if fields is None else fields)
    if want - set(HOST_FACTS):
        raise BadInputError(f"fields = {sorted(want - set(HOST_FACTS))}: allowed host facts {', '.join(HOST_FACTS)}")
    run_bands = list(cfg.run.bands)
    bands = run_bands if bands is None else list(bands)
    if set(bands) - set(run_bands):
        raise BadInputError(f"bands = {bands}: allowed bands of run.bands {run_bands}")
    ids = np.asarray(pair_ids, dtype=np.int64)
    c = CALIBRATION
    out: dict[str, np.ndarray] = {}
    galaxy = bool(want & _GALAXY_FACTS)
    if galaxy or want & _SKY_FACTS:
        # the first k columns of a pair's uniforms do not depend on k: the sky needs 8
        u = _unit_open(pair_uniforms(cfg.run.seed, ids, Stream.HOST_PROPS, _K if galaxy else 8))
        ra, dec = _sky_positions(u[:, :8])
        out.update(ra=ra, dec=dec)
        if "brickname" in want:
            out["brickname"] = brickname_of(ra, dec)
        if galaxy:
            out.update(_galaxy_facts(u, cfg, bands))
    if want & {"psf_fwhm", "psfdepth"}:
        # seeing and depth: a second block of uniforms so adding host facts never shifts them
        # column 2 + k (PSF) and 2 + n_bands + k (depth) belong to band k of run.bands
        v = _unit_open(pair_uniforms(cfg.run.seed, ids, Stream.HOST_PROPS + 100, 2 + 2 * len(run_bands)))
        col = [run_bands.index(b) for b in bands]
        if "psf_fwhm" in want:
            psf_r = np.clip(c["psf_r"][0] * np.exp(c["psf_r"][1] * ndtri(v[:, 0])), 0.8, 2.6)
            out["psf_fwhm"] = np.stack(
                [
                    np.clip(psf_r * c["psf_ratio"][b] * np.exp(0.05 * ndtri(v[:, 2 + k])), 0.7, 3.0)
                    for k, b in zip(col, bands, strict=True)
                ],
                axis=1,
            ).astype(np.float32)
        if "psfdepth" in want:
            des = out["dec"] < c["des_dec_max"]
            out["psfdepth"] = np.stack(
                [
                    np.where(des, c["depth_des"][b], c["depth_decals"][b])
                    + c["depth_sigma"] * np.clip(ndtri(v[:, 2 + len(run_bands) + k]), -3, 3)
                    for k, b in zip(col, bands, strict=True)
                ],
                axis=1,
            ).astype(np.float32)
    if "host_id" in want:
        out["host_id"] = ids.copy()
    return {k: out[k] for k in HOST_FACTS if k in want}


def _host_images(props: dict, cfg) -> np.ndarray:
    """Noise-free PSF-convolved host galaxies (n, band, size, size), nanomaggy: mixtures of
    Gaussians convolved analytically with the PSF (:mod:`lensarray.hosts.mog`)."""
    unit = render_galaxies(
        props["host_reff"],
        props["host_n"],
        props["host_e1"],
        props["host_e2"],
        props["psf_fwhm"],
        size=cfg.run.size,
        pixel_scale=cfg.run.pixel_scale,
        psf_model=cfg.psf.model,
        psf_beta=cfg.psf.moffat_beta,
    )
    unit *= mag_to_nmgy(np.asarray(props["host_mag"], np.float64), cfg.run.zero_point).astype(np.float32)[
        :, :, None, None
    ]
    return unit


#: Bits of the saturated-blob mask: SATUR_G/R/Z (2-4) and ALLMASK_G/R/Z (5-7).
_BLOB_BITS = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7)


#: Mantissa bits of the synthetic invvar: a smooth model plane needs no more (relative precision
#: 1.2e-4), and it then compresses 9x instead of 1.1x (benchmarks/bench_codecs.py).
INVVAR_KEEPBITS = 12


def draw_mask_feature(m: np.random.Generator, maskbits: np.ndarray, invvar: np.ndarray, host: np.ndarray) -> None:
    """One mask feature, drawn from ``m``, applied in place to one host's ``maskbits`` (y, x),
    ``invvar`` and ``host`` (band, y, x): a BRIGHT halo (flag only), a saturated blob (SATUR_* +
    ALLMASK_*, invvar 0, pixels clipped at 0) or a no-data edge strip (invvar 0, pixels 0)."""
    size = maskbits.shape[-1]
    kind = m.integers(0, 3)
    cy, cx = m.uniform(-0.45, 0.45, 2) * size
    d = np.hypot(np.arange(size)[:, None] - size // 2 - cy, np.arange(size)[None, :] - size // 2 - cx)
    if kind == 0:  # BRIGHT star halo: flagged, data kept
        maskbits[d < m.uniform(8, 30)] |= 1 << 1
    elif kind == 1:  # saturated blob: no usable data
        blob = d < m.uniform(1.0, 3.5)
        maskbits[blob] |= _BLOB_BITS
        invvar[:, blob] = 0.0
        host[:, blob] = np.maximum(host[:, blob], 0.0)
    else:  # missing data strip at an edge
        w = int(m.integers(2, 9))
        side = int(m.integers(0, 4))
        sl = [
            (slice(0, w), slice(None)),
            (slice(-w, None), slice(None)),
            (slice(None), slice(0, w)),
            (slice(None), slice(-w, None)),
        ][side]
        invvar[:, sl[0], sl[1]] = 0.0
        host[:, sl[0], sl[1]] = 0.0


def _noise_and_masks(ids: np.ndarray, props: dict, images: np.ndarray, cfg):
    """Add sky noise drawn from invvar to ``images`` (in place) and draw the mask features.

    Per pair, from its HOST_NOISE stream: three uniforms (the invvar gradient, whether the host
    has a mask feature) then ``band x size x size`` float32 standard normals (numpy's fastest
    path, straight into a preallocated buffer); the mask feature of the ``hosts.mask_rate`` of
    hosts that have one from their HOST_MASK stream (so only those pay for a second generator).
    The invvar plane is rounded to ``INVVAR_KEEPBITS`` mantissa bits and the noise is drawn from
    exactly that invvar.
    """
    size = cfg.run.size
    n = images.shape[0]
    sig_psf = np.asarray(props["psf_fwhm"], dtype=np.float64) * FWHM_TO_SIGMA / cfg.run.pixel_scale  # pixels
    nea = 4.0 * np.pi * sig_psf**2
    sky_sigma = psfdepth_mag_to_sigma(np.asarray(props["psfdepth"], np.float64), cfg.run.zero_point) / np.sqrt(nea)
    draws = np.empty((n, 3))
    streams = []
    for k, pid in enumerate(ids):
        g = pair_rng(cfg.run.seed, int(pid), Stream.HOST_NOISE)
        draws[k] = g.random(3)
        streams.append(g)  # its normals are drawn below, once the pair's invvar is known
    grads = (0.1 * draws[:, :2] - 0.05).astype(np.float32)  # uniform in [-0.05, 0.05)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size - 1) - np.float32(0.5)
    plane = np.float32(1.0) + grads[:, 0, None, None] * xx + grads[:, 1, None, None] * yy  # (n, y, x)
    invvar = round_mantissa((1.0 / sky_sigma**2).astype(np.float32)[:, :, None, None] * plane[:, None], INVVAR_KEEPBITS)
    host = images
    # one pair's noise at a time in two cache-resident buffers (64 kB each), not a whole-shard
    # normals buffer (16 MB of fresh pages per shard, a second full pass over memory); the same
    # float32 operations as host += normals / sqrt(invvar), so the pixels are unchanged
    normals = np.empty(images.shape[1:], dtype=np.float32)
    sigma = np.empty_like(normals)
    for k, g in enumerate(streams):
        g.standard_normal(dtype=np.float32, out=normals)
        np.sqrt(invvar[k], out=sigma)
        normals /= sigma
        host[k] += normals
    maskbits = np.zeros((n, size, size), dtype=np.int32)
    for m in np.flatnonzero(draws[:, 2] < cfg.hosts.mask_rate):
        draw_mask_feature(pair_rng(cfg.run.seed, int(ids[m]), Stream.HOST_MASK), maskbits[m], invvar[m], host[m])
    return host, invvar, maskbits


def synthetic_hosts(pair_ids: np.ndarray, cfg, props: dict | None = None) -> dict[str, np.ndarray]:
    """Host facts plus ``host``, ``invvar`` (n, band, size, size) float32 and ``maskbits``
    (n, size, size) int32 for ``pair_ids``; identical for a pair whatever the batch."""
    ids = np.asarray(pair_ids, dtype=np.int64)
    props = props if props is not None else synthetic_host_properties(ids, cfg)
    images = _host_images(props, cfg)
    host, invvar, maskbits = _noise_and_masks(ids, props, images, cfg)
    return {**props, "host": host, "invvar": invvar, "maskbits": maskbits}
