"""Vectorised priors for every injection parameter, and exact arc-S/N calibration.

Each pair draws a fixed number of uniforms from its own stream (``rng.pair_uniforms``) and every
prior is an inverse-CDF transform of one column, so a pair's parameters do not depend on which
pairs share its chunk, and adding a parameter never shifts another's draw.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from .rng import Stream, pair_uniforms

__all__ = ["sample_params", "sample_balance_params", "calibrate_flux", "sample_target_snr"]

_K_LENS = 8
_K_SOURCE = 12
_K_BRIGHT = 4


def _truncated_normal(u: np.ndarray, sigma: float, limit: float) -> np.ndarray:
    """Normal(0, sigma) truncated to |x| < limit, by inverse CDF."""
    if sigma <= 0:
        return np.zeros_like(u)
    from scipy.stats import norm

    a = norm.cdf(-limit / sigma)
    return sigma * ndtri(np.clip(a + (1 - 2 * a) * u, 1e-12, 1 - 1e-12))


def _ellipticity(u_mod: np.ndarray, u_ang: np.ndarray, sigma: float, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """(e1, e2) with |e| from a half-normal of per-component sigma, truncated at ``limit``,
    and a uniform position angle."""
    # |e| ~ Rayleigh(sigma) truncated: inverse CDF of 1 - exp(-e^2 / 2 sigma^2)
    if sigma <= 0:
        return np.zeros_like(u_mod), np.zeros_like(u_mod)
    cmax = 1 - np.exp(-(limit**2) / (2 * sigma**2))
    e = sigma * np.sqrt(-2 * np.log(1 - u_mod * cmax))
    ang = 2 * np.pi * u_ang
    return e * np.cos(ang), e * np.sin(ang)


def sample_target_snr(u: np.ndarray, edges, fractions) -> np.ndarray:
    """Piecewise-uniform target arc S/N: bin ``k`` (edges[k], edges[k+1]) with probability
    ``fractions[k]``, uniform within the bin."""
    edges = np.asarray(edges, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(fractions)])
    cum /= cum[-1]
    k = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, len(fractions) - 1)
    within = (u - cum[k]) / np.where(cum[k + 1] > cum[k], cum[k + 1] - cum[k], 1.0)
    return edges[k] + within * (edges[k + 1] - edges[k])


def _theta_e(u: np.ndarray, lens) -> np.ndarray:
    """The theta_E prior (arcsec) of ``cfg.lens`` at uniforms ``u``."""
    if lens.theta_e_prior == "loguniform":
        return np.exp(np.log(lens.theta_e_min) + u * (np.log(lens.theta_e_max) - np.log(lens.theta_e_min)))
    return lens.theta_e_min + u * (lens.theta_e_max - lens.theta_e_min)


def _target_snr(u: np.ndarray, brightness) -> np.ndarray:
    return sample_target_snr(u, brightness.snr_edges, brightness.snr_fractions)


def sample_balance_params(pair_ids: np.ndarray, cfg) -> dict[str, np.ndarray]:
    """``theta_e`` (arcsec) and, in S/N mode, ``target_snr`` of ``pair_ids``: exactly the values
    :func:`sample_params` draws (first draw), from the same uniforms, without the other priors.

    What the split planner balances over every pair: a fraction of the cost of all priors.
    """
    ids = np.asarray(pair_ids, dtype=np.int64)
    seed = cfg.run.seed
    # the first column of each stream: column-major random blocks make it independent of k
    out = {"theta_e": _theta_e(_uniforms(seed, ids, Stream.LENS, 1, 0)[:, 0], cfg.lens)}
    if cfg.brightness.mode == "snr":
        out["target_snr"] = _target_snr(_uniforms(seed, ids, Stream.BRIGHTNESS, 1, 0)[:, 0], cfg.brightness)
    return out


def _uniforms(seed: int, ids: np.ndarray, stream: int, k: int, attempt: int) -> np.ndarray:
    """The pair's own uniforms of ``stream``; ``attempt > 0`` (a re-draw) is keyed by the attempt
    too, so a re-draw never shifts the first draw of this or any other pair."""
    return pair_uniforms(seed, ids, stream, k, attempt=attempt)


def sample_params(pair_ids: np.ndarray, cfg, hosts: dict, *, attempt: int = 0) -> dict[str, np.ndarray]:
    """Every injection parameter for ``pair_ids``.

    Parameters
    ----------
    pair_ids
        Pair ids (int64).
    cfg
        :class:`lensarray.config.RunConfig`.
    hosts
        Host facts with ``psf_fwhm`` (n, band) arcsec (pixels are not needed).
    attempt
        0: the pair's first draw; ``k > 0``: its k-th re-draw (lens, source and brightness),
        used when a lens falls below the S/N floor (``brightness.snr_floor_action = "redraw"``).

    Returns
    -------
    dict
        ``theta_e`` (arcsec), ``lens_e1``, ``lens_e2``, ``lens_x``, ``lens_y`` (arcsec),
        ``shear_g1``, ``shear_g2``, ``src_x``, ``src_y`` (arcsec, source plane), ``src_reff``
        (arcsec), ``src_n``, ``src_e1``, ``src_e2``, ``src_color`` (n, band; mag relative to the
        S/N band), ``psf_fwhm`` (n, band), ``psf_beta`` (n,; NaN for a Gaussian PSF), and
        ``target_snr`` (mode "snr") or ``src_mag`` (n, band; mode "mag").
    """
    ids = np.asarray(pair_ids, dtype=np.int64)
    n = ids.size
    seed = cfg.run.seed
    L, S, B = cfg.lens, cfg.source, cfg.brightness
    ul = _uniforms(seed, ids, Stream.LENS, _K_LENS, attempt)
    us = _uniforms(seed, ids, Stream.SOURCE, _K_SOURCE, attempt)
    ub = _uniforms(seed, ids, Stream.BRIGHTNESS, _K_BRIGHT, attempt)

    theta_e = _theta_e(ul[:, 0], L)
    lens_e1, lens_e2 = _ellipticity(ul[:, 1], ul[:, 2], L.e_sigma, 0.5)
    shear_g1 = _truncated_normal(ul[:, 3], L.shear_sigma, 0.2)
    shear_g2 = _truncated_normal(ul[:, 4], L.shear_sigma, 0.2)
    lens_x = _truncated_normal(ul[:, 5], L.offset_sigma, 3 * L.offset_sigma + 1e-9)
    lens_y = _truncated_normal(ul[:, 6], L.offset_sigma, 3 * L.offset_sigma + 1e-9)

    # source offset |beta| = frac * theta_E, uniform in area within the allowed annulus so that
    # positions are uniform on the source plane (more sources at large offsets, as in nature)
    f0, f1 = S.beta_frac_min, S.beta_frac_max
    frac = np.sqrt(f0**2 + us[:, 0] * (f1**2 - f0**2))
    ang = 2 * np.pi * us[:, 1]
    beta = frac * theta_e
    src_x = lens_x + beta * np.cos(ang)
    src_y = lens_y + beta * np.sin(ang)
    src_reff = np.exp(np.log(S.reff_min) + us[:, 2] * (np.log(S.reff_max) - np.log(S.reff_min)))
    src_n = S.n_min + us[:, 3] * (S.n_max - S.n_min)
    src_e1, src_e2 = _ellipticity(us[:, 4], us[:, 5], S.e_sigma, 0.6)
    g_r = S.color_g_r_min + us[:, 6] * (S.color_g_r_max - S.color_g_r_min)
    r_z = S.color_r_z_min + us[:, 7] * (S.color_r_z_max - S.color_r_z_min)
    bands = list(cfg.run.bands)
    rel_r = {"g": g_r, "r": np.zeros(n), "i": -0.5 * r_z, "z": -r_z}  # mag - r mag
    ref = rel_r[B.snr_band]
    src_color = np.stack([rel_r[b] - ref for b in bands], axis=1)

    psf_fwhm = np.asarray(hosts["psf_fwhm"], dtype=np.float32)
    out = {
        "theta_e": theta_e,
        "lens_e1": lens_e1,
        "lens_e2": lens_e2,
        "lens_x": lens_x,
        "lens_y": lens_y,
        "shear_g1": shear_g1,
        "shear_g2": shear_g2,
        "src_x": src_x,
        "src_y": src_y,
        "src_reff": src_reff,
        "src_n": src_n,
        "src_e1": src_e1,
        "src_e2": src_e2,
        "src_color": src_color,
        "psf_fwhm": psf_fwhm,
        "psf_beta": np.full(n, cfg.psf.moffat_beta if cfg.psf.model == "moffat" else np.nan),
    }
    if B.mode == "snr":
        out["target_snr"] = _target_snr(ub[:, 0], B)
    else:
        m_ref = B.src_mag_min + ub[:, 1] * (B.src_mag_max - B.src_mag_min)
        out["src_mag"] = m_ref[:, None] + src_color
    return out


def calibrate_flux(
    unit_arcs: np.ndarray,
    invvar: np.ndarray,
    target_snr: np.ndarray,
    snr_band_index: int,
    *,
    unit_snr: np.ndarray | None = None,
) -> np.ndarray:
    """Source flux (image units, S/N band, unlensed) that gives exactly ``target_snr``.

    Every S/N definition used (matched filter ``sqrt(sum(arc^2 invvar))``, aperture
    ``sum(arc) / sqrt(sum(1/invvar))``) is linear in flux, so ``flux = target_snr / snr(unit arc)``.
    Pixels with ``invvar == 0`` contribute nothing; an arc with zero S/N at unit flux (e.g.
    entirely on masked pixels, or entirely inside a hard core mask) gives NaN.

    Parameters
    ----------
    unit_arcs
        ``(n, band, size, size)`` arcs of unit source flux in the S/N band.
    invvar
        ``(n, band, size, size)`` inverse variance, image units^-2.
    target_snr
        ``(n,)`` wanted S/N.
    snr_band_index
        Index of the S/N band.
    unit_snr
        ``(n,)`` S/N of the unit arcs, if already measured (another definition than the matched
        filter); default: the matched filter of ``unit_arcs``.
    """
    if unit_snr is None:
        from .derived import matched_filter_snr

        unit_snr = matched_filter_snr(unit_arcs[:, snr_band_index], invvar[:, snr_band_index])
    unit_snr = np.asarray(unit_snr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(unit_snr > 0, np.asarray(target_snr, dtype=np.float64) / unit_snr, np.nan)
