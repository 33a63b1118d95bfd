"""The v0.1 synthetic-host renderer and a converged reference, for tests and benchmarks only.

Builds never call this module: :mod:`lensarray.hosts.synthetic` renders hosts as mixtures of
Gaussians (:mod:`lensarray.hosts.mog`). Kept so that the new renderer is measured against the
old one (``tests/test_hosts_mog.py``, ``benchmarks/bench_build_stages.py``) and against a
converged answer.

- :func:`fft_host_images`: v0.1 exactly (3x3 sub-pixels summed onto pixels, FFT convolution with
  a pixel-integrated Gaussian whose variance is reduced by pixel^2/12, or a Moffat sampled at
  pixel centres);
- :func:`fft_synthetic_hosts`: the v0.1 ``synthetic_hosts`` (pixels, float64 noise, masks);
- :func:`converged_host_images`: the exact Sersic on a fine grid (``ss`` x ``ss`` cells per
  pixel, even so that no cell centre sits on the cusp), convolved on that grid with the PSF
  integrated over a cell, then integrated over each pixel (convolve-then-integrate).
"""

from __future__ import annotations

import numpy as np

from ..physics.photometry import mag_to_nmgy, psfdepth_mag_to_sigma
from ..physics.psf import FWHM_TO_SIGMA, fft_convolve, gaussian_psf, kernel_size, moffat_psf
from ..physics.source import sersic_ellipse, sersic_total_flux
from ..rng import Stream, pair_rng
from .synthetic import draw_mask_feature

__all__ = ["fft_host_images", "fft_synthetic_hosts", "converged_host_images"]


def _unit_sersic(props: dict, a: int, b: int, size: int, scale: float, ss: int) -> np.ndarray:
    """Unit-flux Sersic of hosts ``a:b`` integrated over pixels by ``ss`` x ``ss`` sub-pixels."""
    off = ((np.arange(size * ss) + 0.5) / ss - 0.5 - size // 2) * scale
    col = lambda k: np.asarray(props[k][a:b], dtype=np.float64)[:, None, None]  # noqa: E731
    amp = 1.0 / sersic_total_flux(1.0, col("host_reff"), col("host_n"))
    sb = sersic_ellipse(
        off[None, None, :], off[None, :, None], amp, col("host_reff"), col("host_n"), col("host_e1"), col("host_e2")
    )
    return sb * (scale / ss) ** 2


def fft_host_images(props: dict, cfg) -> np.ndarray:
    """v0.1 noise-free PSF-convolved hosts (n, band, size, size), nanomaggy."""
    size, scale = cfg.run.size, cfg.run.pixel_scale
    ss = 3
    n = len(props["host_id"])
    nb = len(cfg.run.bands)
    out = np.empty((n, nb, size, size), dtype=np.float32)
    ksz = kernel_size(size)
    for a in range(0, n, 16):
        b = min(a + 16, n)
        unit = _unit_sersic(props, a, b, size, scale, ss).reshape(b - a, size, ss, size, ss).sum(axis=(2, 4))
        fwhm = np.asarray(props["psf_fwhm"][a:b], dtype=np.float64)
        if cfg.psf.model == "gaussian":
            sig = fwhm * FWHM_TO_SIGMA
            kern = gaussian_psf(np.sqrt(sig**2 - scale**2 / 12) / FWHM_TO_SIGMA, ksz, scale)
        else:
            kern = moffat_psf(fwhm, cfg.psf.moffat_beta, ksz, scale, oversample=1)
        conv = fft_convolve(unit[:, None], kern)
        out[a:b] = (conv * mag_to_nmgy(props["host_mag"][a:b], cfg.run.zero_point)[:, :, None, None]).astype(np.float32)
    return out


def converged_host_images(props: dict, cfg, *, ss: int = 10, kernel_pixels: int = 41) -> np.ndarray:
    """Converged unit-flux hosts (n, band, size, size) float64: see the module docstring.

    The PSF kernel spans ``kernel_pixels`` pixels (odd; enough for FWHM <= 3": +-20 px is > 6
    sigma); the Moffat is integrated over a cell with 3 x 3 points.
    """
    if ss % 2:
        raise ValueError(f"ss = {ss}: allowed an even number (no cell centre on the cusp)")
    size, scale = cfg.run.size, cfg.run.pixel_scale
    n = len(props["host_id"])
    nb = len(cfg.run.bands)
    out = np.empty((n, nb, size, size))
    ksz = kernel_pixels * ss + 1  # odd: centred on a cell, so the convolution shifts nothing
    for a in range(n):
        fine = _unit_sersic(props, a, a + 1, size, scale, ss)[0]
        fwhm = np.asarray(props["psf_fwhm"][a], dtype=np.float64)
        if cfg.psf.model == "gaussian":
            kern = gaussian_psf(fwhm, ksz, scale, cell=1.0 / ss)
        else:
            kern = moffat_psf(fwhm, cfg.psf.moffat_beta, ksz, scale, cell=1.0 / ss, oversample=3)
        conv = fft_convolve(np.broadcast_to(fine, (nb, *fine.shape)), kern)
        out[a] = conv.reshape(nb, size, ss, size, ss).sum(axis=(2, 4))
    return out


def fft_synthetic_hosts(pair_ids: np.ndarray, cfg, props: dict) -> dict[str, np.ndarray]:
    """v0.1 ``synthetic_hosts`` (its pixel values; for timing and comparison only)."""
    ids = np.asarray(pair_ids, dtype=np.int64)
    images = fft_host_images(props, cfg)
    size, scale = cfg.run.size, cfg.run.pixel_scale
    n, nb = images.shape[:2]
    sig_psf = np.asarray(props["psf_fwhm"], dtype=np.float64) * FWHM_TO_SIGMA / scale
    sky_sigma = psfdepth_mag_to_sigma(np.asarray(props["psfdepth"], np.float64), cfg.run.zero_point) / np.sqrt(
        4.0 * np.pi * sig_psf**2
    )
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1) - 0.5
    host = np.empty_like(images)
    invvar = np.empty_like(images)
    maskbits = np.zeros((n, size, size), dtype=np.int32)
    for k, pid in enumerate(ids):
        g = pair_rng(cfg.run.seed, int(pid), Stream.HOST_NOISE)
        grad = g.uniform(-0.05, 0.05, 2)
        iv = (1.0 / sky_sigma[k] ** 2)[:, None, None] * (1.0 + grad[0] * xx + grad[1] * yy)[None]
        img = images[k] + g.standard_normal((nb, size, size)) / np.sqrt(iv)
        m = pair_rng(cfg.run.seed, int(pid), Stream.HOST_MASK)
        if m.random() < cfg.hosts.mask_rate:
            draw_mask_feature(m, maskbits[k], iv, img)
        host[k] = img
        invvar[k] = iv
    return {**props, "host": host, "invvar": invvar.astype(np.float32), "maskbits": maskbits}
