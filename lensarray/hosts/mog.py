"""Host galaxies as mixtures of Gaussians, convolved with the PSF analytically: no FFT.

The approach of the Legacy Surveys' own Tractor models (Hogg & Lang 2013, PASP 125, 719,
"Replacing standard galaxy profiles with mixtures of Gaussians"): a Sersic profile is a sum of
concentric Gaussians; an elliptical galaxy is the same sum with every Gaussian sheared; a
Gaussian convolved with a Gaussian PSF is a Gaussian whose covariance is the sum of the two, so
the PSF-convolved galaxy is evaluated directly on the pixel grid. A Moffat PSF is itself a
mixture of Gaussians, and the convolved model is the product mixture.

The mixtures are our own fits (not the paper's tables, whose profiles are truncated and softened
differently): for every Sersic index on a grid of step ``N_STEP`` a non-negative least-squares
fit of the circular profile ``exp(-b_n ((r/R_e)^(1/n) - 1))`` (lenstronomy's ``b_n``, as
:func:`lensarray.physics.source.sersic_ellipse`) by ``len(SD_GRID)`` = 18 Gaussians with fixed
widths ``SD_GRID`` (0.003-12 R_e), weighted by area (r dr), on 0 < r < 25 R_e; weights are
normalised to the analytic total flux, so light beyond the fit radius is missing exactly as it
is missing from a finite stamp. Between grid indices the weights are interpolated linearly
(fixed widths make that an interpolation of profiles). Fits run once per index (cached).

Two approximations make it cheap, both measured in ``tests/test_hosts_mog.py`` against a
converged FFT reference (:mod:`lensarray.hosts._fft_reference`):

- pixel integration: a pixel's box response is replaced by a Gaussian of the same variance
  (1/12 pixel^2 per axis), added to every component;
- components much narrower than the PSF (major-axis sigma below ``MERGE_FRACTION`` x the PSF
  sigma) are merged into one Gaussian with the same flux and second moments: after convolution
  they differ only at fourth order in (width / PSF sigma).

Hosts are centred on the stamp origin, so every image is point-symmetric about it: half the
grid is evaluated and mirrored.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit

from ..physics.psf import FWHM_TO_SIGMA
from ..physics.source import ellipticity_to_q_phi, sersic_b, sersic_total_flux

__all__ = ["SD_GRID", "N_STEP", "MERGE_FRACTION", "sersic_mixture", "moffat_mixture", "render_galaxies"]

#: Widths (standard deviations, units of R_e) of the Sersic mixture components.
SD_GRID = np.geomspace(3e-3, 12.0, 18)
#: Sersic-index grid step of the cached fits.
N_STEP = 0.05
#: Components with a major-axis sigma below this fraction of the PSF sigma are merged.
MERGE_FRACTION = 0.5
_N_RANGE = (0.3, 8.0)
#: Moffat mixture widths (units of the Moffat alpha).
_MOFFAT_SD = np.geomspace(0.05, 30.0, 16)


def _nnls_fit(radius: np.ndarray, profile: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Amplitudes (peak heights) of Gaussians of widths ``sd`` fitting ``profile(radius)``,
    least squares weighted by area on log-spaced radii (weight r per point = sqrt(r^2 dlnr))."""
    from scipy.optimize import nnls

    design = np.exp(-0.5 * (radius[:, None] / sd[None, :]) ** 2)
    amp, _ = nnls(design * radius[:, None], profile * radius, maxiter=50 * sd.size)
    return amp


@cache
def _sersic_fit(index: int) -> np.ndarray:
    """Flux fractions of the ``SD_GRID`` components for Sersic index ``index * N_STEP``."""
    n = index * N_STEP
    r = np.geomspace(1e-4, 25.0, 800)
    amp = _nnls_fit(r, np.exp(-sersic_b(n) * (r ** (1.0 / n) - 1.0)), SD_GRID)
    return amp * 2.0 * np.pi * SD_GRID**2 / sersic_total_flux(1.0, 1.0, n)


def sersic_mixture(n_sersic) -> np.ndarray:
    """Flux fractions ``(len(n_sersic), len(SD_GRID))`` of the mixture of each Sersic index.

    Component ``k`` is a circular Gaussian of standard deviation ``SD_GRID[k] * R_e`` (sheared
    by the ellipticity as the profile is); the fractions sum to the share of the total flux
    inside 25 R_e (0.99-1.0 for n <= 5).
    """
    n = np.atleast_1d(np.asarray(n_sersic, dtype=np.float64))
    if np.any(~np.isfinite(n)) or np.any((n < _N_RANGE[0]) | (n > _N_RANGE[1])):
        raise ValueError(f"host_n: allowed range [{_N_RANGE[0]}, {_N_RANGE[1]}]")
    t = n / N_STEP
    lo = np.floor(t).astype(int)
    frac = (t - lo)[:, None]
    tab = {i: _sersic_fit(i) for i in np.unique(np.concatenate([lo, lo + 1]))}
    w_lo = np.stack([tab[i] for i in lo])
    w_hi = np.stack([tab[i + 1] for i in lo])
    return (1.0 - frac) * w_lo + frac * w_hi


@cache
def moffat_mixture(beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(flux fractions, variances in units of alpha^2) of a circular Moffat
    ``(1 + (r/alpha)^2)^-beta`` as a mixture of Gaussians; fractions sum to ~1 (within 30 alpha)."""
    if not beta > 1:
        raise ValueError(f"psf_beta = {beta}: allowed > 1")
    r = np.geomspace(1e-3, 60.0, 800)
    amp = _nnls_fit(r, (1.0 + r**2) ** (-beta), _MOFFAT_SD)
    total = np.pi / (beta - 1.0)  # integral of the Moffat profile over the plane, alpha = 1
    frac = amp * 2.0 * np.pi * _MOFFAT_SD**2 / total
    keep = frac > 0
    return frac[keep], _MOFFAT_SD[keep] ** 2


@njit(cache=True)
def _sum_gaussians(a, b, c, w, target, rad, out):  # pragma: no cover - compiled
    """``out[target[j], rad + x, y] += w[j] exp(a[j] x^2 + 2 b[j] x y + c[j] y^2)`` for
    y = 0..rad, x = -rad..rad (pixels), by recurrence along x from x = 0 outwards.

    Along a row the ratio of neighbouring values is itself geometric, so each pixel costs two
    multiplications instead of an exp; the inner loop over rows is contiguous (x-major ``out``)
    and vectorises. Float64 from the centre column outwards: in any row holding more than e^-23
    of a component's peak, its value at x = 0 is above exp(-23 (1 + 1 / (1 - rho^2))) of the peak
    (rho its correlation coefficient; <= 0.78 for axis ratios >= 0.35, above e^-85), far from
    float64's underflow at e^-708, so nothing vanishes before it should (axis ratios down to 0.01).
    """
    ny = rad + 1
    g = np.empty(ny)
    r = np.empty(ny)
    g0 = np.empty(ny)
    for j in range(a.size):
        t = target[j]
        aj, bj, cj, wj = a[j], b[j], c[j], w[j]
        e2a = np.exp(2.0 * aj)
        for yi in range(ny):
            g0[yi] = wj * np.exp(cj * yi * yi)
            g[yi] = g0[yi]
            r[yi] = np.exp(aj + 2.0 * bj * yi)
        for xi in range(rad + 1):
            for yi in range(ny):
                out[t, rad + xi, yi] += g[yi]
                g[yi] *= r[yi]
                r[yi] *= e2a
        for yi in range(ny):
            r[yi] = np.exp(aj - 2.0 * bj * yi)
            g[yi] = g0[yi] * r[yi]
            r[yi] *= e2a
        for xi in range(1, rad + 1):
            for yi in range(ny):
                out[t, rad - xi, yi] += g[yi]
                g[yi] *= r[yi]
                r[yi] *= e2a


def render_galaxies(
    reff,
    n_sersic,
    e1,
    e2,
    psf_fwhm,
    *,
    size: int,
    pixel_scale: float,
    psf_model: str = "gaussian",
    psf_beta: float = 3.5,
    merge_fraction: float = MERGE_FRACTION,
) -> np.ndarray:
    """Unit-flux PSF-convolved Sersic galaxies centred on the stamp origin.

    Parameters
    ----------
    reff, n_sersic, e1, e2
        Half-light radius (arcsec, the Sersic ``R_sersic``), index, ellipticity components;
        shape ``(n,)``.
    psf_fwhm
        PSF FWHM per galaxy and band, arcsec, shape ``(n, band)``.
    size, pixel_scale
        Stamp side (pixels) and arcsec per pixel.
    psf_model, psf_beta
        ``"gaussian"`` or ``"moffat"`` (with Moffat ``beta``).
    merge_fraction
        Components narrower than this fraction of the PSF sigma are merged (0 merges none).

    Returns
    -------
    ndarray
        ``(n, band, size, size)`` float32: flux per pixel of a galaxy of total flux 1.
    """
    reff = np.asarray(reff, dtype=np.float64)
    fwhm = np.asarray(psf_fwhm, dtype=np.float64)
    n, nb = fwhm.shape
    k = SD_GRID.size
    weights = sersic_mixture(n_sersic)  # (n, K)
    q, phi = ellipticity_to_q_phi(e1, e2)
    cos, sin = np.cos(phi), np.sin(phi)
    # covariance of a unit-variance component, pixels^2: R diag(1/q, q) R^T (R_e / pixel)^2, the
    # product-average radius sqrt(q x'^2 + y'^2 / q) of sersic_ellipse
    scale2 = (reff / pixel_scale) ** 2
    shape = np.stack(
        [
            scale2 * (cos * cos / q + sin * sin * q),
            scale2 * cos * sin * (1.0 / q - q),
            scale2 * (sin * sin / q + cos * cos * q),
        ],
        axis=-1,
    )  # (n, 3): xx, xy, yy
    if psf_model == "gaussian":
        psf_w, psf_v = np.ones(1), np.ones(1)
        psf_var = (fwhm * FWHM_TO_SIGMA / pixel_scale) ** 2  # (n, nb): scales psf_v
    elif psf_model == "moffat":
        psf_w, psf_v = moffat_mixture(float(psf_beta))
        psf_var = (fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / psf_beta) - 1.0)) / pixel_scale) ** 2  # alpha^2
    else:
        raise ValueError(f"psf_model = {psf_model!r}: allowed 'gaussian' or 'moffat'")
    merge_var = (fwhm * FWHM_TO_SIGMA / pixel_scale) ** 2
    var = SD_GRID**2
    # merge: per (galaxy, band) the components narrower than merge_fraction x the PSF sigma become
    # one extra component (slot K) with their flux and flux-weighted variance
    small = (var[None, None, :] * (scale2 / q)[:, None, None]) < merge_fraction**2 * merge_var[:, :, None]
    wb = np.broadcast_to(weights[:, None, :], (n, nb, k))
    w_small = np.where(small, wb, 0.0).sum(axis=-1)
    v_small = np.where(small, wb * var, 0.0).sum(axis=-1) / np.where(w_small > 0, w_small, 1.0)
    comp_w = np.concatenate([np.where(small, 0.0, wb), w_small[..., None]], axis=-1)  # (n, nb, K+1)
    comp_v = np.concatenate([np.broadcast_to(var, (n, nb, k)), v_small[..., None]], axis=-1)
    # product mixture with the PSF components; a pixel's box response as a Gaussian of its variance
    pv = psf_v[None, None, None, :] * psf_var[:, :, None, None] + 1.0 / 12.0  # (n, nb, 1, P)
    tw = comp_w[..., None] * psf_w
    cxx = comp_v[..., None] * shape[:, None, None, None, 0] + pv
    cxy = np.broadcast_to(comp_v[..., None] * shape[:, None, None, None, 1], tw.shape)
    cyy = comp_v[..., None] * shape[:, None, None, None, 2] + pv
    target = np.broadcast_to(np.arange(n * nb).reshape(n, nb, 1, 1), tw.shape)
    live = tw > 1e-7 * tw.sum(axis=(2, 3), keepdims=True)
    tw, cxx, cxy, cyy, target = tw[live], cxx[live], cxy[live], cyy[live], target[live]
    det = cxx * cyy - cxy * cxy
    # exp(-0.5 [x y] C^-1 [x y]^T), C^-1 = [[cyy, -cxy], [-cxy, cxx]] / det
    rad = size // 2
    half = np.zeros((n * nb, 2 * rad + 1, rad + 1))
    _sum_gaussians(
        -0.5 * cyy / det,
        0.5 * cxy / det,
        -0.5 * cxx / det,
        tw / (2.0 * np.pi * np.sqrt(det)),
        target.astype(np.int64),
        rad,
        half,
    )
    half = half.reshape(n, nb, 2 * rad + 1, rad + 1).transpose(0, 1, 3, 2)  # (n, nb, y >= 0, x)
    out = np.empty((n, nb, size, size), dtype=np.float32)
    # point symmetry about the origin: the rows above it are the rows below, reversed
    out[:, :, rad:, :] = half[:, :, : size - rad, :size]
    out[:, :, :rad, :] = half[:, :, rad:0:-1, ::-1][..., :size]
    return out
