"""Hard negatives: arc-like features that are not lenses.

A lens finder that keys on "a curved blue feature near an LRG" instead of the lensing
configuration fails on ring galaxies, spiral arms and tidal debris. A configurable fraction of
pairs carries such a feature in place of the lensed arc (``hard_negative`` > 0); both of its
stamps are labelled non-lens, and the feature gets the same arc-S/N calibration as arcs, so
brightness cannot tell them apart.

Features are rendered at unit total flux (1 nanomaggy per band) before the PSF, then convolved
with the pair's PSF per band, exactly like :func:`lensarray.physics.render.render_unit_arcs`.
"""

from __future__ import annotations

import numpy as np

from .cube import NEGATIVE_KINDS
from .rng import Stream, pair_rng, pair_uniforms

__all__ = ["draw_negative_kinds", "render_negative_features", "KIND_CODES"]

KIND_CODES = {name: i for i, name in enumerate(NEGATIVE_KINDS)}


def draw_negative_kinds(pair_ids: np.ndarray, cfg) -> np.ndarray:
    """Per-pair kind code (int8): 0 = lens injection, else ring/spiral/tidal (``cube.NEGATIVE_KINDS``).

    A pair is a hard negative with probability ``cfg.negatives.fraction``; its kind is drawn
    uniformly from ``cfg.negatives.kinds``. Chunk-independent (per-pair stream).
    """
    frac = float(cfg.negatives.fraction)
    kinds = [KIND_CODES[k] for k in cfg.negatives.kinds]
    u = pair_uniforms(cfg.run.seed, pair_ids, Stream.NEGATIVE, 2)
    out = np.zeros(u.shape[0], dtype=np.int8)
    neg = u[:, 0] < frac
    if kinds:
        out[neg] = np.asarray(kinds, dtype=np.int8)[np.minimum((u[neg, 1] * len(kinds)).astype(int), len(kinds) - 1)]
    return out


def _feature(kind: int, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, theta_e: float) -> np.ndarray:
    """Surface brightness (arbitrary units) of one feature on grid (x, y) in arcsec."""
    r = np.hypot(x, y)
    phi = np.arctan2(y, x)
    radius = theta_e * rng.uniform(0.8, 1.3)
    width = rng.uniform(0.12, 0.3)
    if kind == KIND_CODES["ring"]:
        # a ring galaxy: complete (or nearly) ring with azimuthal knots, slightly elliptical
        q = rng.uniform(0.6, 1.0)
        pa = rng.uniform(0, np.pi)
        xr = x * np.cos(pa) + y * np.sin(pa)
        yr = -x * np.sin(pa) + y * np.cos(pa)
        re = np.hypot(xr, yr / q)
        knots = 1.0 + 0.5 * np.cos(rng.integers(2, 6) * phi + rng.uniform(0, 2 * np.pi))
        return np.exp(-0.5 * ((re - radius) / width) ** 2) * knots
    if kind == KIND_CODES["spiral"]:
        # two logarithmic arms r = a exp(b phi), winding outwards from ~0.5 theta_E
        pitch = np.tan(np.radians(rng.uniform(12, 30)))
        phase = rng.uniform(0, 2 * np.pi)
        a = 0.5 * radius
        img = np.zeros_like(r)
        for arm in range(2):
            ang = np.mod(phi - phase - arm * np.pi, 2 * np.pi)
            for turn in range(2):
                r_arm = a * np.exp(pitch * (ang + 2 * np.pi * turn))
                img += np.exp(-0.5 * ((r - r_arm) / width) ** 2) * np.exp(-r_arm / (2.5 * radius))
        return img
    if kind == KIND_CODES["tidal"]:
        # one or two shells/streams: arcs of limited extent, on one side only (no counter image)
        img = np.zeros_like(r)
        centre = rng.uniform(-np.pi, np.pi)
        for k in range(rng.integers(1, 3)):
            rad = radius * (1.0 + 0.4 * k) * rng.uniform(0.9, 1.1)
            extent = rng.uniform(0.5, 1.4)
            dphi = np.angle(np.exp(1j * (phi - centre - k * rng.uniform(-0.5, 0.5))))
            img += np.exp(-0.5 * ((r - rad) / (width * 1.5)) ** 2) * np.exp(-0.5 * (dphi / extent) ** 4)
        return img
    raise ValueError(f"negative kind {kind}: allowed 1 (ring), 2 (spiral), 3 (tidal)")


def render_negative_features(pair_ids: np.ndarray, kinds: np.ndarray, params: dict, cfg) -> np.ndarray:
    """Unit-flux, PSF-convolved hard-negative features ``(n, nb, size, size)`` float32.

    Parameters
    ----------
    pair_ids
        Pair ids (int), for the per-pair random geometry.
    kinds
        Kind code per pair (:func:`draw_negative_kinds`); rows with 0 stay zero.
    params
        Sampled parameters: ``theta_e`` (arcsec; sets the feature radius so it competes with
        arcs), ``psf_fwhm`` (n, nb) arcsec.
    cfg
        Run configuration (stamp size, pixel scale, PSF model).
    """
    from .physics.psf import fft_convolve, gaussian_psf, moffat_psf

    size, scale, nb = cfg.run.size, cfg.run.pixel_scale, len(cfg.run.bands)
    pair_ids = np.asarray(pair_ids, dtype=np.int64)
    kinds = np.asarray(kinds)
    n = pair_ids.size
    out = np.zeros((n, nb, size, size), dtype=np.float32)
    idx = np.flatnonzero(kinds > 0)
    if idx.size == 0:
        return out
    ss = 4  # sub-pixels per side: features are smooth on the PSF scale
    off = (np.arange(size * ss) + 0.5) / ss - 0.5 - size // 2
    yy, xx = np.meshgrid(off * scale, off * scale, indexing="ij")
    theta_e = np.asarray(params["theta_e"], dtype=np.float64)
    images = np.zeros((idx.size, size, size), dtype=np.float64)
    for k, i in enumerate(idx):
        # the kind came from the pair's block uniforms (draw_negative_kinds); the geometry from
        # its own per-pair generator of the same stream (keyed apart, so no number is shared)
        rng = pair_rng(cfg.run.seed, int(pair_ids[i]), Stream.NEGATIVE)
        sb = _feature(int(kinds[i]), rng, xx, yy, float(theta_e[i]))
        img = sb.reshape(size, ss, size, ss).mean(axis=(1, 3))
        images[k] = img / img.sum()
    fwhm = np.asarray(params["psf_fwhm"], dtype=np.float64)[idx]
    if cfg.psf.model == "moffat":
        kern = moffat_psf(fwhm, cfg.psf.moffat_beta, size, scale)
    else:
        kern = gaussian_psf(fwhm, size, scale)
    conv = fft_convolve(np.repeat(images[:, None], nb, axis=1), kern)
    out[idx] = conv.astype(np.float32)
    return out
