"""Converged lenstronomy reference images for the physics tests and the render benchmark."""

from __future__ import annotations

import numpy as np


def lenstronomy_image(
    p: dict,
    i: int,
    band: int,
    *,
    size: int = 64,
    pixel_scale: float = 0.262,
    supersample: int = 12,
    psf_model: str = "gaussian",
    psf_beta: float = 3.5,
    flux: float = 1.0,
    model=None,
):
    """One band of one stamp from lenstronomy (SIE + SHEAR, SERSIC_ELLIPSE, Gaussian PSF),
    with its grid shifted by half a pixel so that its origin is our stamp origin (the centre of
    pixel size//2), and convolution on the supersampled grid (convolve, then integrate).
    Returns (image in units of ``flux``, model) — pass ``model`` back to reuse the ImageModel."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.LightModel.Profiles.sersic import SersicElliptic

    half = 0.5 * pixel_scale  # lenstronomy's even-size grid origin sits half a pixel from ours
    fwhm = float(p["psf_fwhm"][i][band])
    if model is None or model[1] != fwhm:
        ra0 = -(size - 1) / 2.0 * pixel_scale
        data = ImageData(
            image_data=np.zeros((size, size)),
            ra_at_xy_0=ra0,
            dec_at_xy_0=ra0,
            transform_pix2angle=np.eye(2) * pixel_scale,
        )
        if psf_model == "gaussian":
            psf = PSF(psf_type="GAUSSIAN", fwhm=fwhm, truncation=6, pixel_size=pixel_scale)
        else:
            raise NotImplementedError
        im = ImageModel(
            data,
            psf,
            lens_model_class=LensModel(["SIE", "SHEAR"]),
            source_model_class=LightModel(["SERSIC_ELLIPSE"]),
            kwargs_numerics={"supersampling_factor": supersample, "supersampling_convolution": True},
        )
        model = (im, fwhm)
    g = lambda k: float(p.get(k, np.zeros(len(p["theta_e"])))[i])  # noqa: E731
    kw_lens = [
        {
            "theta_E": g("theta_e"),
            "e1": g("lens_e1"),
            "e2": g("lens_e2"),
            "center_x": g("lens_x") + half,
            "center_y": g("lens_y") + half,
        },
        {"gamma1": g("shear_g1"), "gamma2": g("shear_g2"), "ra_0": g("lens_x") + half, "dec_0": g("lens_y") + half},
    ]
    amp_unit = 1.0 / float(SersicElliptic().total_flux(amp=1, R_sersic=g("src_reff"), n_sersic=g("src_n")))
    kw_src = [
        {
            "amp": flux * amp_unit,
            "R_sersic": g("src_reff"),
            "n_sersic": g("src_n"),
            "e1": g("src_e1"),
            "e2": g("src_e2"),
            "center_x": g("src_x") + half,
            "center_y": g("src_y") + half,
        }
    ]
    img = model[0].image(kwargs_lens=kw_lens, kwargs_source=kw_src)
    return np.asarray(img), model


def random_params(n: int, seed: int = 0, *, reff=(0.1, 0.6), theta_e=(0.5, 3.0), nb: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    te = rng.uniform(*theta_e, n)
    beta = rng.uniform(0.05, 0.9, n) * te
    ang = rng.uniform(0, 2 * np.pi, n)
    return {
        "theta_e": te,
        "lens_e1": rng.normal(0, 0.12, n),
        "lens_e2": rng.normal(0, 0.12, n),
        "lens_x": rng.normal(0, 0.05, n),
        "lens_y": rng.normal(0, 0.05, n),
        "shear_g1": rng.normal(0, 0.03, n),
        "shear_g2": rng.normal(0, 0.03, n),
        "src_x": beta * np.cos(ang),
        "src_y": beta * np.sin(ang),
        "src_reff": rng.uniform(*reff, n),
        "src_n": rng.uniform(0.7, 2.5, n),
        "src_e1": rng.normal(0, 0.15, n),
        "src_e2": rng.normal(0, 0.15, n),
        "psf_fwhm": rng.uniform(1.0, 1.8, (n, nb)),
    }


# ------------------------------------------------------------------ converged brute-force reference
def _models(p: dict, i: int):
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.LightModel.Profiles.sersic import SersicElliptic

    g = lambda k: float(p.get(k, np.zeros(len(p["theta_e"])))[i])  # noqa: E731
    kw_lens = [
        {
            "theta_E": g("theta_e"),
            "e1": g("lens_e1"),
            "e2": g("lens_e2"),
            "center_x": g("lens_x"),
            "center_y": g("lens_y"),
        },
        {"gamma1": g("shear_g1"), "gamma2": g("shear_g2"), "ra_0": g("lens_x"), "dec_0": g("lens_y")},
    ]
    amp = 1.0 / float(SersicElliptic().total_flux(amp=1, R_sersic=g("src_reff"), n_sersic=g("src_n")))
    kw_src = [
        {
            "amp": amp,
            "R_sersic": g("src_reff"),
            "n_sersic": g("src_n"),
            "e1": g("src_e1"),
            "e2": g("src_e2"),
            "center_x": g("src_x"),
            "center_y": g("src_y"),
        }
    ]
    return LensModel(["SIE", "SHEAR"]), kw_lens, LightModel(["SERSIC_ELLIPSE"]), kw_src, g("theta_e") > 0


def _adaptive_flux(p: dict, i: int, size: int, pixel_scale: float, cells: int, tol: float) -> np.ndarray:
    """Lensed unit-source flux per cell (``cells`` per pixel side) by adaptive quadtree cubature
    with lenstronomy's SIE + SHEAR ray shooting and SERSIC_ELLIPSE, in our grid convention
    (pixel (i, j) centred at ((j - size//2), (i - size//2)) * pixel_scale).

    Every pixel starts as one square; a square is integrated by the midpoint rule on 8 x 8 points
    and on 4 x 4, and split in four while the two differ by more than ``tol`` (unit source flux)
    or while it holds an image of the source centre (lenstronomy's lens-equation solver: the
    Sersic cusp lands there and can fall between any fixed set of points), down to 1e-6".
    Accepted points put their flux into the cell holding them (midpoints never sit on a cell
    edge)."""
    from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

    lens, kw_lens, light, kw_src, lensed = _models(p, i)
    cx, cy = kw_src[0]["center_x"], kw_src[0]["center_y"]
    if lensed:
        ix, iy = LensEquationSolver(lens).image_position_from_source(
            cx,
            cy,
            kw_lens,
            min_distance=0.03,
            search_window=size * pixel_scale,
            precision_limit=1e-12,
            num_iter_max=200,
        )
        ix, iy = np.asarray(ix, float), np.asarray(iy, float)
    else:
        ix, iy = np.array([cx]), np.array([cy])

    def sb(x, y):
        if lensed:
            x, y = lens.ray_shooting(x, y, kw_lens)
        return light.surface_brightness(x, y, kw_src)

    lo = -(size // 2 + 0.5) * pixel_scale
    cell = pixel_scale / cells
    out = np.zeros((size * cells, size * cells))
    j, k = np.meshgrid(np.arange(size), np.arange(size))
    x0, y0 = lo + j.ravel() * pixel_scale, lo + k.ravel() * pixel_scale
    side = pixel_scale
    g8 = (np.arange(8) + 0.5) / 8
    g4 = (np.arange(4) + 0.5) / 4
    while x0.size:
        px = (x0[:, None, None] + side * g8[None, None, :]) * np.ones((1, 8, 1))
        py = (y0[:, None, None] + side * g8[None, :, None]) * np.ones((1, 1, 8))
        v8 = np.empty(px.shape)
        chunk = 40000
        flat_x, flat_y = px.reshape(-1, 64), py.reshape(-1, 64)
        v8 = np.concatenate(
            [
                sb(flat_x[a : a + chunk].ravel(), flat_y[a : a + chunk].ravel()).reshape(-1, 64)
                for a in range(0, len(x0), chunk)
            ]
        )
        qx = (x0[:, None, None] + side * g4[None, None, :]) * np.ones((1, 4, 1))
        qy = (y0[:, None, None] + side * g4[None, :, None]) * np.ones((1, 1, 4))
        v4 = np.concatenate(
            [
                sb(qx.reshape(-1, 16)[a : a + chunk].ravel(), qy.reshape(-1, 16)[a : a + chunk].ravel()).reshape(-1, 16)
                for a in range(0, len(x0), chunk)
            ]
        )
        area = side * side
        err = np.abs(v8.mean(axis=1) - v4.mean(axis=1)) * area
        holds = np.zeros(x0.size, bool)
        for a, b in zip(ix, iy, strict=True):
            holds |= (a >= x0) & (a < x0 + side) & (b >= y0) & (b < y0 + side)
        split = ((err > tol) | holds) & (side > 1e-6)
        keep = ~split
        cj = np.floor((flat_x[keep] - lo) / cell).astype(int).ravel()
        ci = np.floor((flat_y[keep] - lo) / cell).astype(int).ravel()
        np.add.at(out, (ci, cj), v8[keep].ravel() * area / 64)
        h = side / 2
        x0 = np.concatenate([x0[split], x0[split] + h, x0[split], x0[split] + h])
        y0 = np.concatenate([y0[split], y0[split], y0[split] + h, y0[split] + h])
        side = h
    return out


def _pixel_psf_1d(offsets_px: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian PSF integrated over a pixel (width 1), at offsets from the pixel centre (px)."""
    from scipy.special import erf

    s = np.sqrt(2.0) * sigma_px
    return 0.5 * (erf((offsets_px + 0.5) / s) - erf((offsets_px - 0.5) / s))


def _moffat_pixel_kernel(fwhm_px: float, beta: float, size: int, cells: int, oversample: int = 2) -> np.ndarray:
    """Circular Moffat (normalised over the plane) integrated over a pixel, at cell-lattice offsets
    ``(k + 1/2) / cells`` px out to the stamp's side (every cell reaches every pixel)."""
    alpha = fwhm_px / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    h = 1.0 / (cells * oversample)
    reach = size + 1.0
    m = int(np.ceil(reach / h))
    t = (np.arange(-m, m) + 0.5) * h
    prof = (beta - 1.0) / (np.pi * alpha**2) * (1.0 + (t[:, None] ** 2 + t[None, :] ** 2) / alpha**2) ** (-beta)
    # the pixel box as a running sum of `cells * oversample` samples per axis
    box = cells * oversample
    c = np.cumsum(np.cumsum(np.pad(prof, ((1, 0), (1, 0))), axis=0), axis=1)
    k = (c[box:, box:] - c[:-box, box:] - c[box:, :-box] + c[:-box, :-box]) * h * h
    # k[a, b] integrates samples a..a+box-1: centred at t[a] + (box - 1) h / 2; keep lattice offsets
    centre = t[: k.shape[0]] + (box - 1) * h / 2
    frac = (centre * cells - 0.5) % 1.0
    pick = np.flatnonzero(np.isclose(frac, 0.0, atol=1e-6) | np.isclose(frac, 1.0, atol=1e-6))
    return k[np.ix_(pick, pick)], centre[pick]


def reference_image(
    p: dict,
    i: int,
    *,
    size: int = 48,
    pixel_scale: float = 0.262,
    tol: float = 1e-7,
    cells: int = 16,
    psf_model: str = "gaussian",
    psf_beta: float = 3.5,
) -> tuple[np.ndarray, float]:
    """Converged image of stamp ``i`` (all bands), independent of lensarray's kernel:
    lenstronomy's profiles integrated by adaptive cubature to ``tol`` per square
    (:func:`_adaptive_flux`), binned onto ``cells`` cells per pixel side, each cell convolved as
    a point with the PSF integrated exactly over the pixel (Gaussian: erf; Moffat: 4x-oversampled
    cell lattice). Returns (bands, size, size) and the lensed flux before the PSF."""
    import scipy.signal

    flux = _adaptive_flux(p, i, size, pixel_scale, cells, tol)
    fwhm = np.atleast_1d(np.asarray(p["psf_fwhm"][i], dtype=np.float64))
    # pixel centres x_i = i - size//2 (px), cell centres u_a = (a + 1/2)/cells - 1/2 - size//2
    u = (np.arange(size * cells) + 0.5) / cells - 0.5 - size // 2
    x = np.arange(size) - size // 2
    out = np.empty((fwhm.size, size, size))
    for b, fw in enumerate(fwhm):
        fw_px = fw / pixel_scale
        if psf_model == "gaussian":
            w = _pixel_psf_1d(x[:, None] - u[None, :], fw_px / (2.0 * np.sqrt(2.0 * np.log(2.0))))
            out[b] = w @ flux @ w.T
        else:
            k, t = _moffat_pixel_kernel(fw_px, psf_beta, size, cells)
            full = scipy.signal.fftconvolve(flux, k, mode="full")
            # full[m] sits at u[0] + t[0] + m / cells; pixel centre x_i -> m = (x_i - u0 - t0) * cells
            m = np.rint((x - u[0] - t[0]) * cells).astype(int)
            out[b] = full[np.ix_(m, m)]
    return out, float(flux.sum())


# ------------------------------------------------------------------ parameter regions
#: The accepted range (config.py [lens] [source] [psf] and the renderer's own checks): what every
#: region draws from unless it narrows one axis to its hard corner.
ACCEPTED = {
    "theta_e": (0.3, 3.5),
    "lens_e": 0.5,
    "shear": 0.2,
    "offset": 0.6,
    "beta_frac": (0.0, 2.0),
    "reff": (0.05, 0.6),
    "n": (0.5, 4.0),
    "src_e": 0.6,
    "fwhm_px": (2.0, 7.0),
}


def _caustic_beta(p: dict, i: int, angle: float) -> tuple[float, float]:
    """A point on the tangential caustic: the image-plane point where det(A) = 0 along ``angle``
    from the lens centre (bisection on numerical derivatives of the lens equation), traced back."""
    from lensarray.physics.lens import ray_shoot

    args = [p[k][i] for k in ("theta_e", "lens_e1", "lens_e2", "lens_x", "lens_y", "shear_g1", "shear_g2")]
    c, s = np.cos(angle), np.sin(angle)

    def det(r, h=1e-5):
        x, y = args[3] + r * c, args[4] + r * s
        bxp, byp = ray_shoot(x + h, y, *args)
        bxm, bym = ray_shoot(x - h, y, *args)
        bxu, byu = ray_shoot(x, y + h, *args)
        bxd, byd = ray_shoot(x, y - h, *args)
        return ((bxp - bxm) * (byu - byd) - (byp - bym) * (bxu - bxd)) / (4 * h * h)

    lo, hi = 0.2 * args[0], 3.0 * args[0]  # det < 0 inside the tangential critical curve, > 0 outside
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if det(mid) < 0 else (lo, mid)
    r = 0.5 * (lo + hi)
    bx, by = ray_shoot(args[3] + r * c, args[4] + r * s, *args)
    return float(bx), float(by)


def region_params(
    region: str, n: int, seed: int = 0, *, nb: int = 1, pixel_scale: float = 0.262, size: int = 48
) -> dict:
    """``n`` random stamps of one parameter region, drawn over the accepted range (ACCEPTED) with
    the region's axis pushed to its corner:

    - ``default``: the default priors (config defaults);
    - ``cusp``: Sersic n 3-4, R_eff 0.1-0.6";
    - ``compact``: R_eff 0.05-0.1" (n 0.5-4), lens q down to 1/3, shear, offsets;
    - ``elliptical``: lens |e| 0.4-0.5 (q 0.33-0.43), source |e| 0.45-0.6, |shear| up to 0.28;
    - ``narrow_psf``: FWHM 2-2.5 pixels;
    - ``caustic``: the source centre on the tangential caustic (n 0.5-4, R_eff 0.05-0.3");
    - ``wide``: everything over the whole accepted range at once.
    """
    rng = np.random.default_rng(seed)
    A = ACCEPTED

    def ell(lo, hi, size):
        e = rng.uniform(lo, hi, size)
        a = rng.uniform(0, 2 * np.pi, size)
        return e * np.cos(a), e * np.sin(a)

    te = rng.uniform(*A["theta_e"], n)
    le1, le2 = ell(0.0, A["lens_e"], n)
    g1, g2 = ell(0.0, A["shear"], n)
    lx, ly = ell(0.0, A["offset"], n)
    se1, se2 = ell(0.0, A["src_e"], n)
    reff = np.exp(rng.uniform(*np.log(A["reff"]), n))
    sn = rng.uniform(*A["n"], n)
    beta = rng.uniform(*A["beta_frac"], n) * te
    fwhm = rng.uniform(*A["fwhm_px"], (n, nb)) * pixel_scale
    if region == "default":
        return {**random_params(n, seed, nb=nb)}
    if region == "cusp":
        sn = rng.uniform(3.0, 4.0, n)
        reff = rng.uniform(0.1, 0.6, n)
    elif region == "compact":
        reff = rng.uniform(0.05, 0.1, n)
        beta = rng.uniform(0.0, 1.2, n) * te
    elif region == "elliptical":
        le1, le2 = ell(0.4, 0.5, n)
        se1, se2 = ell(0.45, 0.6, n)
        g1, g2 = (rng.uniform(-0.2, 0.2, n) for _ in range(2))
        beta = rng.uniform(0.0, 1.0, n) * te
    elif region == "narrow_psf":
        fwhm = rng.uniform(2.0, 2.5, (n, nb)) * pixel_scale
        beta = rng.uniform(0.0, 1.0, n) * te
    elif region == "caustic":
        reff = np.exp(rng.uniform(np.log(0.05), np.log(0.3), n))
    elif region != "wide":
        raise ValueError(f"region {region!r}: allowed default, cusp, compact, elliptical, narrow_psf, caustic, wide")
    # the stamp holds its arcs: the outer image (theta_E + beta) inside 80% of the half-side (a
    # per-pixel error relative to the peak of a stamp that holds only an arc's outskirts says
    # little; those stamps' errors stay within the same absolute budget)
    beta = np.minimum(beta, np.maximum(0.8 * size / 2 * pixel_scale - te, 0.0))
    ang = rng.uniform(0, 2 * np.pi, n)
    p = {
        "theta_e": te,
        "lens_e1": le1,
        "lens_e2": le2,
        "lens_x": lx,
        "lens_y": ly,
        "shear_g1": g1,
        "shear_g2": g2,
        "src_x": lx + beta * np.cos(ang),
        "src_y": ly + beta * np.sin(ang),
        "src_reff": reff,
        "src_n": sn,
        "src_e1": se1,
        "src_e2": se2,
        "psf_fwhm": fwhm,
    }
    if region == "caustic":
        for i in range(n):
            p["src_x"][i], p["src_y"][i] = _caustic_beta(p, i, ang[i])
    return p
