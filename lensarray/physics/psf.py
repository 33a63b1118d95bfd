"""PSF kernels and batched FFT convolution.

Kernels are centred on the stamp origin, the centre of pixel (size//2, size//2), normalised to
1 over the stamp, and integrated over the pixel (a pixel records the PSF-convolved light falling
on its area), so that ``fft_convolve(flux_per_pixel, kernel)`` is the observed image.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.special import erf

__all__ = ["gaussian_psf", "moffat_psf", "fft_convolve", "kernel_size", "FWHM_TO_SIGMA"]

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _check_fwhm(fwhm) -> np.ndarray:
    f = np.asarray(fwhm, dtype=np.float64)
    if not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError(f"psf_fwhm: allowed finite values > 0 arcsec (got min {np.nanmin(f) if f.size else f})")
    return f


def kernel_size(size: int) -> int:
    """Odd kernel side for a ``size`` stamp: ``2*(size//2) + 1``, centred on index ``size//2``."""
    return 2 * (size // 2) + 1


def gaussian_psf(fwhm, size: int, pixel_scale: float, *, cell: float = 1.0) -> np.ndarray:
    """Pixel-integrated Gaussian PSF, exact (erf), batched over the shape of ``fwhm``.

    Parameters
    ----------
    fwhm
        FWHM in arcsec, any shape ``S``.
    size
        Kernel side in cells.
    pixel_scale
        Arcsec per pixel.
    cell
        Cell side in pixels (``0.5`` for a half-pixel grid); the kernel is integrated over a cell.

    Returns
    -------
    ndarray
        ``S + (size, size)`` float64, sum 1, centred on cell (size//2, size//2).
    """
    f = _check_fwhm(fwhm)
    sigma = f * FWHM_TO_SIGMA / (pixel_scale * cell)  # in cells
    edges = np.arange(size + 1) - size // 2 - 0.5
    s = np.sqrt(2.0) * sigma[..., None]
    cdf = 0.5 * erf(edges / s)
    k1 = np.diff(cdf, axis=-1)
    k1 /= k1.sum(axis=-1, keepdims=True)
    return k1[..., :, None] * k1[..., None, :]


def moffat_psf(
    fwhm, beta: float, size: int, pixel_scale: float, *, cell: float = 1.0, oversample: int = 7
) -> np.ndarray:
    """Pixel-integrated circular Moffat PSF (``oversample``^2 points per cell), sum 1.

    ``I(r) ~ (1 + (r/alpha)^2)^-beta`` with ``alpha = fwhm / (2 sqrt(2^(1/beta) - 1))``.
    """
    f = _check_fwhm(fwhm)
    if not beta > 1:
        raise ValueError(f"psf_beta = {beta}: allowed > 1")
    alpha = f / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0)) / (pixel_scale * cell)
    sub = (np.arange(size * oversample) + 0.5) / oversample - 0.5 - size // 2
    r2 = sub[:, None] ** 2 + sub[None, :] ** 2
    img = (1.0 + r2 / alpha[..., None, None] ** 2) ** (-beta)
    img = img.reshape(f.shape + (size, oversample, size, oversample)).mean(axis=(-3, -1))
    return img / img.sum(axis=(-2, -1), keepdims=True)


def fft_convolve(images: np.ndarray, kernels: np.ndarray, *, workers: int | None = None) -> np.ndarray:
    """Batched ``scipy.signal.fftconvolve(image, kernel, mode="same")`` over leading dims.

    ``images`` ``(..., ny, nx)`` and ``kernels`` ``(..., ky, kx)`` broadcast over the leading
    dims. Real FFTs on a zero-padded grid (no wrap-around). With an odd kernel side (as
    :func:`kernel_size` gives) an impulse at pixel (ny//2, nx//2) stays there; scipy's "same"
    mode shifts by one pixel for even kernels, so the renderer always uses odd kernels.
    """
    images = np.asarray(images)
    kernels = np.asarray(kernels)
    ny, nx = images.shape[-2:]
    ky, kx = kernels.shape[-2:]
    fy, fx = ny + ky - 1, nx + kx - 1
    shape = (scipy.fft.next_fast_len(fy, real=True), scipy.fft.next_fast_len(fx, real=True))
    dtype = np.float32 if images.dtype == np.float32 and kernels.dtype == np.float32 else np.float64
    fi = scipy.fft.rfft2(images.astype(dtype, copy=False), s=shape, workers=workers)
    fk = scipy.fft.rfft2(kernels.astype(dtype, copy=False), s=shape, workers=workers)
    full = scipy.fft.irfft2(fi * fk, s=shape, workers=workers)
    # "same": the centre of the full output, exactly as scipy.signal.fftconvolve
    y0 = (fy - ny) // 2
    x0 = (fx - nx) // 2
    return full[..., y0 : y0 + ny, x0 : x0 + nx]
