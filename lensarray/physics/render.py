"""Render lensed arcs: adaptive ray tracing, Sersic surface brightness, PSF.

Pipeline per batch of stamps (pure numpy/numba, no Dask):

1. ray-trace through SIE + shear and evaluate the unit-flux Sersic source, refining only where
   an error estimate asks for it (:mod:`lensarray.physics._adaptive`; ``method="dense"``: every
   pixel at ``supersample x supersample`` points), onto a grid of ``conv_cells`` cells per pixel
   side: the lensed flux per cell (``mu`` = its sum, before the PSF), and for the adaptive
   kernel each cell's flux moments (where inside the cell its light sits);
2. convolve with the PSF integrated exactly over each pixel (convolve-then-integrate, the right
   order for an analytic seeing PSF): for the Gaussian a separable matrix product per axis
   (erf differences), with the moments where the light has structure inside a cell (compact
   sources, narrow PSFs); a Moffat as a sum of such Gaussians.

Verified range (``RANGES``, ``MIN_FWHM_PIXELS``, Moffat beta 2.5-10), refused in one line
outside it: worst pixel <= 1% of the peak and flux within 0.5% of a converged reference over it
(``tests/test_physics_accuracy.py``, ``benchmarks/bench_render.py --accuracy``).

Geometry: pixel (i, j) has its centre at ``x = (j - size//2) * pixel_scale``,
``y = (i - size//2) * pixel_scale`` (arcsec), the lens centre is ``(lens_x, lens_y)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import BadInputError
from .blas import single_threaded_blas
from .lens import ray_shoot
from .photometry import mag_to_nmgy
from .psf import FWHM_TO_SIGMA, fft_convolve, gaussian_psf, kernel_size, moffat_psf
from .source import sersic_ellipse, sersic_total_flux

__all__ = [
    "render_unit_arcs",
    "render_arcs",
    "REQUIRED",
    "RANGES",
    "MIN_FWHM_PIXELS",
    "DEFAULT_SUPERSAMPLE",
    "DEFAULT_CONV_CELLS",
]

#: Parameters every call needs (shape (n,)); ``src_mag`` and ``psf_fwhm`` are (n, band).
REQUIRED = ("theta_e", "lens_e1", "lens_e2", "src_x", "src_y", "src_reff", "src_n", "src_e1", "src_e2")
OPTIONAL_ZERO = ("lens_x", "lens_y", "shear_g1", "shear_g2")
DEFAULT_SUPERSAMPLE = 18
DEFAULT_CONV_CELLS = 2
DEFAULT_TOLERANCE = 2e-2
_BATCH = 16  # stamps per inner batch: bounds the temporaries (dense: 16 x (64 ss)^2 x 8 B)

#: The renderer's accepted physical range (inclusive), validated on every call: what the accuracy
#: tests and ``benchmarks/bench_render.py --accuracy`` cover (worst pixel <= 1% of the peak, flux
#: within 0.5% of a converged reference). ``theta_e = 0`` (no lens) is also allowed.
RANGES = {"theta_e": (0.3, 3.5), "src_reff": (0.05, 5.0), "src_n": (0.5, 4.0)}
#: Narrowest PSF accepted, FWHM in pixels.
MIN_FWHM_PIXELS = 2.0
#: Below these (source R_sersic, PSF FWHM; pixels) the Gaussian convolution uses the cells' flux
#: moments (:func:`_gaussian_convolve_separable`).
MOMENTS_REFF_PIXELS = 0.75
MOMENTS_FWHM_PIXELS = 3.0


def _as_params(params: Mapping, n_bands: int, pixel_scale: float) -> tuple[dict[str, np.ndarray], int]:
    missing = [k for k in (*REQUIRED, "psf_fwhm") if k not in params]
    if missing:
        raise BadInputError(f"params lack {missing}; required {list(REQUIRED) + ['psf_fwhm']}")
    p = {k: np.atleast_1d(np.asarray(params[k], dtype=np.float64)) for k in REQUIRED}
    n = p["theta_e"].shape[0]
    for k in (*REQUIRED, *OPTIONAL_ZERO):
        if k in OPTIONAL_ZERO:
            p[k] = np.atleast_1d(np.asarray(params.get(k, np.zeros(n)), dtype=np.float64))
        if p[k].shape != (n,):
            raise BadInputError(f"params[{k!r}] has shape {p[k].shape}; allowed ({n},)")
        if not np.all(np.isfinite(p[k])):
            raise BadInputError(f"params[{k!r}]: allowed finite values")
    for k, (lo, hi) in RANGES.items():
        bad = (p[k] < lo) | (p[k] > hi)
        if k == "theta_e":
            bad &= p[k] != 0.0
        if np.any(bad):
            extra = " or 0 (no lens)" if k == "theta_e" else ""
            raise BadInputError(f"params[{k!r}] = {p[k][bad][0]:g}: allowed range [{lo}, {hi}]{extra}")
    fwhm = np.asarray(params["psf_fwhm"], dtype=np.float64)
    if fwhm.ndim == 1 and n_bands == 1:
        fwhm = fwhm[:, None]
    if fwhm.shape != (n, n_bands):
        raise BadInputError(f"params['psf_fwhm'] has shape {fwhm.shape}; allowed ({n}, {n_bands})")
    lo = MIN_FWHM_PIXELS * pixel_scale
    ok = np.isfinite(fwhm) & ((fwhm >= lo) | (fwhm == 0.0))
    if not np.all(ok):
        raise BadInputError(
            f"params['psf_fwhm'] = {fwhm[~ok][0]:g}: allowed >= {lo:g} arcsec "
            f"({MIN_FWHM_PIXELS:g} pixels of {pixel_scale:g} arcsec), or 0 (no PSF)"
        )
    p["psf_fwhm"] = fwhm
    return p, n


def _cell_kernel(fwhm, ksz, pixel_scale, cs, psf_model, psf_beta):
    """PSF kernel on the convolution cells. The cell fluxes already integrate the light over a
    cell, so the kernel must not integrate again: point-sampled at cell centres (a Gaussian
    integrated over the cell with its variance reduced by cell^2/12 is the same to second order).
    Measured against lenstronomy at supersampling 12: max error 1.0% of peak with this kernel at
    one cell per pixel, 2.0% with a pixel-integrated kernel."""
    cell = 1.0 / cs
    if psf_model == "gaussian":
        sigma = np.asarray(fwhm) * FWHM_TO_SIGMA
        narrow = np.sqrt(np.maximum(sigma**2 - (pixel_scale * cell) ** 2 / 12.0, (1e-3 * pixel_scale) ** 2))
        return gaussian_psf(narrow / FWHM_TO_SIGMA, ksz, pixel_scale, cell=cell)
    return moffat_psf(fwhm, psf_beta, ksz, pixel_scale, cell=cell, oversample=1)


def render_unit_arcs(
    params: Mapping,
    *,
    size: int = 64,
    pixel_scale: float = 0.262,
    bands: Sequence[str] = ("g", "r", "z"),
    supersample: int = DEFAULT_SUPERSAMPLE,
    conv_cells: int = DEFAULT_CONV_CELLS,
    psf_model: str = "gaussian",
    psf_beta: float = 3.5,
    method: str = "adaptive",
    tolerance: float = DEFAULT_TOLERANCE,
    return_error: bool = False,
) -> tuple:
    """Arcs of a source of unit unlensed flux (1 image unit) in every band.

    Parameters
    ----------
    params
        Arrays ``theta_e`` (arcsec), ``lens_e1``, ``lens_e2``, ``src_x``, ``src_y`` (arcsec,
        source plane), ``src_reff`` (arcsec), ``src_n``, ``src_e1``, ``src_e2`` of shape (n,);
        optional ``lens_x``, ``lens_y`` (arcsec), ``shear_g1``, ``shear_g2`` (default 0);
        ``psf_fwhm`` (n, band) arcsec. ``theta_e = 0`` means no lens.
    size
        Stamp side, pixels.
    pixel_scale
        Arcsec per pixel.
    bands
        Band names (only their number matters here).
    supersample
        Ray-tracing points per pixel side: of the fixed refinement level next to the lens centre
        and where the error estimate asks for it, beyond which an error-controlled quadtree
        takes over (``"adaptive"``), or everywhere (``"dense"``).
    conv_cells
        Convolution cells per pixel side (must divide ``supersample``; 2 for ``"adaptive"``).
    psf_model
        ``"gaussian"`` or ``"moffat"`` (with ``psf_beta``).
    method
        ``"adaptive"`` (numba; refinement in levels only where an error estimate asks for it, see
        :mod:`lensarray.physics._adaptive`) or ``"dense"`` (numpy; every pixel supersampled).
    tolerance
        ``"adaptive"`` only: per-cell error target in units of the source's surface brightness at
        ``R_sersic`` (for sources smaller than a pixel: its mean over a pixel-sized disc) times
        the cell area (dimensionless). Accuracy of the default 0.02 with supersampling 18 over
        the accepted parameter range, by region: ``benchmarks/README.md``.
    return_error
        Also return a per-stamp error estimate (from the refinement's own estimates; for
        ``"dense"`` from a second render at half the supersampling, Richardson).

    Returns
    -------
    unit_arcs : ndarray (n, band, size, size) float32
        PSF-convolved lensed flux per pixel for unit source flux.
    mu : ndarray (n,) float32
        Lensed flux inside the stamp / unlensed flux, before the PSF.
    error : dict, only with ``return_error``
        ``pixel_frac_peak`` (n, band): estimated worst pixel error / the stamp's peak;
        ``flux_frac`` (n,): estimated flux error / lensed flux; ``evaluations`` (n,) (adaptive):
        surface-brightness evaluations the stamp took.

    Raises
    ------
    ValueError
        One line naming the first bad argument or parameter and its allowed range (before any
        work); the physical ranges are :data:`RANGES` and ``psf_fwhm >= MIN_FWHM_PIXELS``
        pixels.
    """
    nb = len(bands)
    if not isinstance(supersample, (int, np.integer)) or supersample < 1:
        raise BadInputError(f"supersample = {supersample}: allowed an integer >= 1")
    if conv_cells < 1 or supersample % conv_cells:
        raise BadInputError(f"conv_cells = {conv_cells}: allowed a divisor of supersample ({supersample})")
    if psf_model not in ("gaussian", "moffat"):
        raise BadInputError(f"psf_model = {psf_model!r}: allowed gaussian or moffat")
    if method not in ("adaptive", "dense"):
        raise BadInputError(f"method = {method!r}: allowed adaptive or dense")
    if method == "adaptive" and conv_cells != 2:
        raise BadInputError(f"conv_cells = {conv_cells}: allowed 2 for method 'adaptive'")
    if not (np.isfinite(tolerance) and 0 < tolerance <= 1):
        raise BadInputError(f"tolerance = {tolerance}: allowed range (0, 1]")
    if return_error and method == "dense" and (supersample % 2 or (supersample // 2) % conv_cells):
        raise BadInputError(
            f"supersample = {supersample}: allowed an even multiple of conv_cells for method "
            "'dense' with return_error (the estimate renders at half the supersampling)"
        )
    if psf_model == "moffat" and not (np.isfinite(psf_beta) and 2.5 <= psf_beta <= 10.0):
        raise BadInputError(f"psf_beta = {psf_beta}: allowed range [2.5, 10]")
    p, n = _as_params(params, nb, pixel_scale)
    ss, cs = int(supersample), int(conv_cells)
    if method == "adaptive":
        return _render_adaptive(p, n, nb, size, pixel_scale, ss, cs, psf_model, psf_beta, tolerance, return_error)
    out, mu = _render_dense(p, n, nb, size, pixel_scale, ss, cs, psf_model, psf_beta)
    if not return_error:
        return out, mu
    half, mu_half = _render_dense(p, n, nb, size, pixel_scale, ss // 2, cs, psf_model, psf_beta)
    err = {
        "pixel_frac_peak": (np.abs(out - half).max(axis=(2, 3)) / 3.0 / out.max(axis=(2, 3))).astype(np.float32),
        "flux_frac": (np.abs(mu - mu_half) / 3.0 / mu).astype(np.float32),
    }
    return out, mu, err


def _render_dense(p, n, nb, size, pixel_scale, ss, cs, psf_model, psf_beta):
    fine = size * ss
    off = ((np.arange(fine) + 0.5) / ss - 0.5 - size // 2) * pixel_scale
    gx = off[None, None, :]
    gy = off[None, :, None]
    area = (pixel_scale / ss) ** 2
    ksz = kernel_size(size * cs)
    out = np.empty((n, nb, size, size), dtype=np.float32)
    mu = np.empty(n, dtype=np.float32)
    for a in range(0, n, _BATCH):
        b = min(a + _BATCH, n)
        col = {k: v[a:b, None, None] for k, v in p.items() if k != "psf_fwhm"}
        bx, by = ray_shoot(
            gx,
            gy,
            col["theta_e"],
            col["lens_e1"],
            col["lens_e2"],
            col["lens_x"],
            col["lens_y"],
            col["shear_g1"],
            col["shear_g2"],
        )
        amp = 1.0 / sersic_total_flux(1.0, col["src_reff"], col["src_n"])
        flux = (
            sersic_ellipse(
                bx, by, amp, col["src_reff"], col["src_n"], col["src_e1"], col["src_e2"], col["src_x"], col["src_y"]
            )
            * area
        )
        mu[a:b] = flux.sum(axis=(1, 2))
        g = ss // cs
        cells = flux.reshape(b - a, size * cs, g, size * cs, g).sum(axis=(2, 4))
        fwhm = p["psf_fwhm"][a:b]
        kern = _cell_kernel(fwhm, ksz, pixel_scale, cs, psf_model, psf_beta)
        conv = fft_convolve(cells[:, None], kern)
        out[a:b] = conv.reshape(b - a, nb, size, cs, size, cs).sum(axis=(3, 5))
    return out, mu


def _adaptive_params(p: dict, pixel_scale: float) -> np.ndarray:
    """The kernel's per-stamp table (see :func:`._adaptive.trace_cells`).

    The tolerance's surface brightness is the source's at ``R_sersic``, or for a source smaller
    than a pixel a quarter of the mean over a disc of radius ``sqrt(R^2 + pixel^2)``: the PSF-convolved peak
    of such a source is set by the pixel and the PSF, not by its own (much brighter) surface
    brightness, so an error budget in ``SB(R_sersic)`` would let its cells err by a large
    fraction of the stamp's peak.
    """
    from .source import ellipticity_to_q_phi, sersic_b

    q, phi = ellipticity_to_q_phi(p["lens_e1"], p["lens_e2"])
    qs, phis = ellipticity_to_q_phi(p["src_e1"], p["src_e2"])
    amp = 1.0 / sersic_total_flux(1.0, p["src_reff"], p["src_n"])
    sb_tol = np.minimum(amp, 0.25 / (np.pi * (p["src_reff"] ** 2 + pixel_scale**2)))
    return np.stack(
        [
            p["theta_e"],
            q,
            np.cos(phi),
            np.sin(phi),
            p["lens_x"],
            p["lens_y"],
            p["shear_g1"],
            p["shear_g2"],
            p["src_x"],
            p["src_y"],
            qs,
            np.cos(phis),
            np.sin(phis),
            p["src_reff"],
            1.0 / p["src_n"],
            sersic_b(p["src_n"]),
            amp,
            sb_tol,
        ],
        axis=1,
    ).astype(np.float64)


def _render_adaptive(p, n, nb, size, pixel_scale, ss, cs, psf_model, psf_beta, tolerance, return_error):
    from ._adaptive import trace_cells

    want = _needs_moments(p["src_reff"], p["psf_fwhm"], pixel_scale)
    table = np.concatenate([_adaptive_params(p, pixel_scale), want[:, None].astype(np.float64)], axis=1)
    out = np.empty((n, nb, size, size), dtype=np.float32)
    mu = np.empty(n, dtype=np.float64)
    evals = np.empty(n, dtype=np.int64)
    err_pix = np.empty((n, nb), dtype=np.float32)
    err_flux = np.empty(n, dtype=np.float64)
    # buffers reused across batches: fresh large arrays are fresh pages, faulted in on every batch
    m = min(n, _BATCH)
    cells_buf = np.empty((m, size * cs, size * cs), dtype=np.float32)
    err_buf = np.empty_like(cells_buf)
    mom_buf = np.empty((m, 5, size * cs, size * cs), dtype=np.float32)
    for a in range(0, n, _BATCH):
        b = min(a + _BATCH, n)
        cells, err_cells, mom = cells_buf[: b - a], err_buf[: b - a], mom_buf[: b - a]
        cells.fill(0.0)
        err_cells.fill(0.0)
        # the kernel keeps the moments only of the stamps whose convolution uses them
        for k in np.flatnonzero(want[a:b]):
            mom[k].fill(0.0)
        trace_cells(table[a:b], size, pixel_scale, ss, tolerance, cells, mu[a:b], evals[a:b], err_cells, mom)
        out[a:b] = _convolve_cells(cells, p["psf_fwhm"][a:b], pixel_scale, cs, psf_model, psf_beta, mom, want[a:b])
        if return_error:
            # the per-cell error bounds through the same (non-negative) PSF: an estimate of each
            # pixel's error, compared with the stamp's peak
            fwhm = p["psf_fwhm"][a:b]
            e = _convolve_cells(err_cells, fwhm, pixel_scale, cs, psf_model, psf_beta)
            err_pix[a:b] = e.max(axis=(2, 3)) / np.maximum(out[a:b].max(axis=(2, 3)), 1e-30)
            err_flux[a:b] = err_cells.sum(axis=(1, 2), dtype=np.float64) / np.maximum(mu[a:b], 1e-30)
    if return_error:
        return (
            out,
            mu.astype(np.float32),
            {"pixel_frac_peak": err_pix, "flux_frac": err_flux.astype(np.float32), "evaluations": evals},
        )
    return out, mu.astype(np.float32)


def _needs_moments(src_reff: np.ndarray, fwhm: np.ndarray, pixel_scale: float) -> np.ndarray:
    """Stamps whose light has structure inside a cell that the PSF does not wash out: a source
    smaller than ``MOMENTS_REFF_PIXELS`` or a PSF narrower than ``MOMENTS_FWHM_PIXELS`` (FWHM).
    Elsewhere the cell fluxes alone are within ~0.1% of the peak (measured on the default
    priors) at half the convolution cost. Decided from each stamp's own parameters, so a stamp's
    pixels never depend on its batch neighbours."""
    small = (src_reff < MOMENTS_REFF_PIXELS * pixel_scale) | (fwhm.min(axis=1) < MOMENTS_FWHM_PIXELS * pixel_scale)
    # no PSF (FWHM 0): the light is summed onto pixels; a Taylor expansion in the PSF means nothing
    return small & (fwhm.min(axis=1) > 0)


def _convolve_cells(cells, fwhm, pixel_scale, cs, psf_model, psf_beta, moments=None, use_moments=None):
    """PSF-convolved pixels (n, band, size, size) of cells (n, cs size, cs size), with the cells'
    moments where ``use_moments`` (n,) says so. A Moffat is a sum of Gaussians (below), so both
    models take the same separable, exactly pixel-integrated route."""
    n, size = cells.shape[0], cells.shape[1] // cs
    if psf_model == "gaussian":
        parts = [(1.0, 1.0)]
    else:
        parts = _moffat_as_gaussians(psf_beta)
    if moments is None or use_moments is None:
        use_moments = np.zeros(n, dtype=bool)
    out = None
    for weight, scale in parts:
        fw = fwhm * scale
        # a component much narrower than a cell takes the cell fluxes alone (its Taylor
        # expansion in the light's offset would not converge); its weight is small
        ok = use_moments & (fw.min(axis=1) * FWHM_TO_SIGMA >= 0.5 * pixel_scale / cs)
        for sel, mom in ((ok, moments), (~ok, None)):
            if not sel.any():
                continue
            # the whole batch (the usual case) without fancy-index copies of the cells
            whole = bool(sel.all())
            part = _gaussian_convolve_separable(
                cells if whole else cells[sel],
                fw if whole else fw[sel],
                pixel_scale,
                None if mom is None else (mom if whole else mom[sel]),
            )
            if weight != 1.0:
                part *= np.float32(weight)
            if out is None and whole:
                out = part
                continue
            if out is None:
                out = np.zeros((n, fwhm.shape[1], size, size), np.float32)
            if whole:
                out += part
            else:
                out[sel] += part
    assert out is not None
    return out


#: Gauss-Laguerre nodes of the Moffat's Gaussian mixture (beta >= 3, beta < 3): the profile
#: within 1e-4 of its peak at beta 3.5 with 12, 1e-4 at 2.5 with 24; the heavier tail of a low beta
#: needs the extra nodes for the stamp's flux (0.5% -> 0.2% at beta 2.5, measured).
MOFFAT_COMPONENTS = (12, 24)


def _moffat_as_gaussians(beta: float) -> list[tuple[float, float]]:
    """A circular Moffat ``(1 + r^2/alpha^2)^-beta`` (normalised over the plane) as a weighted sum
    of unit Gaussians: ``(1 + r^2/alpha^2)^-beta`` is the Laplace transform of a Gamma density in
    the Gaussian's precision, so ``M = sum_k w_k N(sigma_k)`` with generalised Gauss-Laguerre
    nodes ``t_k`` (weight ``t^(beta-2) e^-t``), ``sigma_k = alpha / sqrt(2 t_k)``. Returns
    ``(w_k, FWHM_k / FWHM)`` pairs; the weights sum to 1."""
    from scipy.special import gamma, roots_genlaguerre

    t, w = roots_genlaguerre(MOFFAT_COMPONENTS[0] if beta >= 3.0 else MOFFAT_COMPONENTS[1], beta - 2.0)
    w = w / gamma(beta - 1.0)
    alpha_per_fwhm = 1.0 / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return [(float(wk), float(alpha_per_fwhm / np.sqrt(2.0 * tk) / FWHM_TO_SIGMA)) for tk, wk in zip(t, w, strict=True)]


#: Below these a PSF weight (a fraction of a cell's light on a pixel) and a cell's flux or
#: moment (unit source) are set to zero before the float32 products, a guard: products of
#: smaller values would be subnormal, and arithmetic on subnormals takes microcode assists on
#: x86 (on the default priors no measurable difference either way; the convolution's slowness
#: there was strided operands and copies). Their contribution to any pixel is below 1e-9 of the
#: source flux, ~1e-6 of the stamp's peak at most.
_WEIGHT_FLOOR = 1e-9
_FLUX_FLOOR = 1e-18
#: Moment terms are kept in the rows/columns holding light above this fraction of the brightest cell.
_MOMENT_FLOOR = 1e-6


def _flush(a: np.ndarray, floor: float) -> np.ndarray:
    """``a`` with entries of magnitude below ``floor`` set to zero (in place)."""
    a[np.abs(a) < floor] = 0.0
    return a


def _pixel_weights(
    fwhm: np.ndarray, n_pix: int, pixel_scale: float, cs: int, *, exact: bool = False, derivatives: bool = False
):
    """Fraction of a cell's flux that the Gaussian PSF puts on each pixel, per axis.

    ``w[..., i, a]``: the Gaussian integrated exactly (erf differences) over pixel ``i``, for
    light at the centre of cell ``a`` (convolve-then-integrate, the right order for an analytic
    seeing PSF). Without ``exact`` its variance is ``sigma^2 - cell^2/12``: that undoes, to second
    order, the spread the cell binning already holds when the light is smooth across the cell.
    Non-negative and mirror-symmetric for any width: narrow PSFs neither ring nor break x/y
    symmetry (the Fourier-space kernel this replaced did, below FWHM 2 pixels).
    ``derivatives``: also the first and second derivatives with respect to the light's offset
    (pixels). Shapes ``fwhm.shape + (n_pix, n_pix * cs)``, float32.
    """
    from scipy.special import erf

    cell = 1.0 / cs
    sig = np.asarray(fwhm, dtype=np.float64) * FWHM_TO_SIGMA / pixel_scale  # pixels
    var = sig**2 if exact else np.maximum(sig**2 - cell**2 / 12.0, 1e-6)
    # the offset of pixel i's centre from cell a's centre is (cs i - a) / cs + (1 - 1/cs) / 2: it
    # depends on cs i - a alone (Toeplitz), so the erfs are taken on its 2 cs n_pix - 1 values and
    # gathered (the full matrix took ~1 ms of erfs per stamp and band)
    lag = np.arange(-(n_pix * cs - 1), cs * (n_pix - 1) + 1)
    d = lag / cs + 0.5 * (1.0 - cell)
    s = np.sqrt(var)[..., None]
    hi, lo = (d + 0.5) / s, (d - 0.5) / s
    w = _flush(0.5 * (erf(hi / np.sqrt(2.0)) - erf(lo / np.sqrt(2.0))), _WEIGHT_FLOOR)
    if not derivatives:
        return _toeplitz(w, n_pix, cs)
    g_hi, g_lo = np.exp(-0.5 * hi**2), np.exp(-0.5 * lo**2)
    norm = 1.0 / (np.sqrt(2.0 * np.pi) * s)
    # d/d(offset) of the pixel integral = -d/dd; the light moving by +delta is d -> d - delta
    w1 = _flush(norm * (g_hi - g_lo), _WEIGHT_FLOOR)
    w2 = _flush(-norm / s * (hi * g_hi - lo * g_lo), _WEIGHT_FLOOR)
    return _toeplitz(w, n_pix, cs), _toeplitz(w1, n_pix, cs), _toeplitz(w2, n_pix, cs)


def _toeplitz(by_lag: np.ndarray, n_pix: int, cs: int) -> np.ndarray:
    """``t[..., i, a] = by_lag[..., cs i - a + n_pix cs - 1]`` as a C-contiguous float32 array: with
    ``v`` the reversed lags, row ``n_pix - 1 - i`` is the window of ``v`` starting at ``cs i``, so
    a strided view and one row-by-row copy (a fancy-index gather was ~3x the cost)."""
    v = np.ascontiguousarray(by_lag[..., ::-1], dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(v, n_pix * cs, axis=-1)[..., ::cs, :]
    return np.ascontiguousarray(windows[..., ::-1, :])


def _convolve_uniform(cells: np.ndarray, w: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[:, band] = w[:, band] @ cells @ w[:, band]^T`` for (n, band, size, n_cells) weights:
    the y axis of every band in one product (band-major rows stay contiguous blocks, so every
    product goes to BLAS)."""
    n, nb, size, n_cells = w.shape
    left = np.matmul(w.reshape(n, nb * size, n_cells), cells)
    for band in range(nb):
        np.matmul(left[:, band * size : (band + 1) * size], np.swapaxes(w[:, band], 1, 2), out=out[:, band])
    return out


def _gaussian_convolve_separable(
    cells: np.ndarray, fwhm: np.ndarray, pixel_scale: float, moments: np.ndarray | None = None
) -> np.ndarray:
    """Gaussian PSF convolution of ``cs``-per-pixel cells onto pixels: ``W cells W^T`` per band.

    The Gaussian is separable, so the convolution and the pixel sum are one small matrix product
    per axis (:func:`_pixel_weights`) in float32 BLAS: exact pixel integration, no wrap-around,
    no ringing. With ``moments`` (the cells' flux moments about their centres) the light's
    position inside each cell enters to second order (Taylor expansion of the pixel integral in
    the offset: ``F W - M_x W' + M_xx W''/2`` per axis, cross term ``M_xy W'_y W'_x``) with the
    exact PSF variance: what compact sources and narrow PSFs need, where a cell (half a pixel)
    is not small against the PSF or the image.

    Parameters
    ----------
    cells : ndarray (n, cs size, cs size)
        Flux per cell (cs = cells per pixel side).
    fwhm : ndarray (n, band)
        PSF FWHM, arcsec.
    pixel_scale : float
        Arcsec per pixel.
    moments : ndarray (n, 5, cs size, cs size), optional
        ``F dx, F dy, F dx^2, F dy^2, F dx dy`` per cell, offsets in cell sides.

    Returns
    -------
    ndarray (n, band, size, size) float32
    """
    single_threaded_blas()  # float32 GEMM's last bits depend on OpenBLAS's thread count
    n, n_cells, _ = cells.shape
    nb = fwhm.shape[1]
    size = n_cells // 2
    cs = n_cells // size
    cells = _flush(cells.astype(np.float32), _FLUX_FLOOR)
    out = np.empty((n, nb, size, size), dtype=np.float32)
    mm = np.matmul
    if moments is None:
        w = _pixel_weights(fwhm, size, pixel_scale, cs)  # (n, band, size, n_cells)
        return _convolve_uniform(cells, w, out)
    c = np.float32(1.0 / cs)  # cell side, pixels
    w, w1, w2 = _pixel_weights(fwhm, size, pixel_scale, cs, exact=True, derivatives=True)
    # light uniform over each cell (second moments F/12 per axis, to every order in the
    # product): the whole stamp in one product per axis, as without moments
    _convolve_uniform(cells, w + (c * c / 24.0) * w2, out)
    # the light's departure from uniform inside its cell (dipoles, residual second moments) only
    # where there is light: rows and columns whose brightest cell is below _MOMENT_FLOOR of the
    # stamp's brightest hold moments below that (|M| <= F / 2); dropping them moved no pixel by
    # more than 3e-6 of the peak (measured on the default, compact, narrow-PSF and cusp priors)
    flux_rows, flux_cols = cells.max(axis=2), cells.max(axis=1)
    floor = _MOMENT_FLOOR * cells.max(axis=(1, 2))
    for k in range(n):
        rows = np.flatnonzero(flux_rows[k] > floor[k])
        cols = np.flatnonzero(flux_cols[k] > floor[k])
        if not rows.size or not cols.size:
            continue
        r, q = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        f = cells[k, r, q]
        # contiguous operands: numpy hands strided ones to its own loops, not to BLAS
        mx, my, mxx, myy, mxy = (_flush(np.ascontiguousarray(moments[k, t, r, q]), _FLUX_FLOOR) for t in range(5))
        dxx = mxx - f / np.float32(12.0)
        dyy = myy - f / np.float32(12.0)
        # every band at once: (band, columns, size) on the right, (band, size, rows) on the left
        t_w, t_w1, t_w2 = (np.ascontiguousarray(np.swapaxes(a[k, :, :, q], 1, 2)) for a in (w, w1, w2))
        # rows (y) on the left, columns (x) on the right; grouped by the left factor
        left0 = -c * mm(mx, t_w1) + (0.5 * c * c) * mm(dxx, t_w2)
        left1 = -c * mm(my, t_w) + (c * c) * mm(mxy, t_w1)
        left2 = (0.5 * c * c) * mm(dyy, t_w)
        w_r, w1_r, w2_r = (np.ascontiguousarray(a[k, :, :, r]) for a in (w, w1, w2))
        out[k] += mm(w_r, left0) + mm(w1_r, left1) + mm(w2_r, left2)
    # the truncated expansion can dip a hair below zero far from the light (~1e-6 of the peak);
    # the true image cannot
    return np.maximum(out, 0.0, out=out)


def render_arcs(
    params: Mapping,
    *,
    size: int = 64,
    pixel_scale: float = 0.262,
    bands: Sequence[str] = ("g", "r", "z"),
    supersample: int = DEFAULT_SUPERSAMPLE,
    conv_cells: int = DEFAULT_CONV_CELLS,
    psf_model: str = "gaussian",
    psf_beta: float = 3.5,
    zero_point: float = 22.5,
    method: str = "adaptive",
    tolerance: float = DEFAULT_TOLERANCE,
    return_error: bool = False,
):
    """Lensed, PSF-convolved arcs in image units (nanomaggy for zero point 22.5).

    ``params`` as for :func:`render_unit_arcs` plus ``src_mag`` (n, band): AB magnitude of the
    unlensed source; every renderer setting is forwarded to it (same meanings, same checks,
    before any work). Returns ``(n, band, size, size)`` float32, or with ``return_error`` also
    the error estimate of :func:`render_unit_arcs`. No core mask is applied.
    """
    if "src_mag" not in params:
        raise BadInputError("params lack 'src_mag' (n, band): the unlensed AB magnitude per band")
    mag = np.asarray(params["src_mag"], dtype=np.float64)
    n = np.atleast_1d(np.asarray(params.get("theta_e", []))).shape[0]
    if mag.shape != (n, len(bands)):
        raise BadInputError(f"params['src_mag'] has shape {mag.shape}; allowed ({n}, {len(bands)})")
    if not np.all(np.isfinite(mag)):
        raise BadInputError("params['src_mag']: allowed finite AB magnitudes")
    res = render_unit_arcs(
        params,
        size=size,
        pixel_scale=pixel_scale,
        bands=bands,
        supersample=supersample,
        conv_cells=conv_cells,
        psf_model=psf_model,
        psf_beta=psf_beta,
        method=method,
        tolerance=tolerance,
        return_error=return_error,
    )
    arcs = (res[0] * mag_to_nmgy(mag, zero_point)[:, :, None, None]).astype(np.float32)
    return (arcs, res[2]) if return_error else arcs
