"""Converged lenstronomy reference images for the physics tests and the render benchmark."""

from __future__ import annotations

import numpy as np


def lenstronomy_image(p: dict, i: int, band: int, *, size: int = 64, pixel_scale: float = 0.262,
                      supersample: int = 12, psf_model: str = "gaussian", psf_beta: float = 3.5,
                      flux: float = 1.0, model=None):
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
        data = ImageData(image_data=np.zeros((size, size)), ra_at_xy_0=ra0, dec_at_xy_0=ra0,
                         transform_pix2angle=np.eye(2) * pixel_scale)
        if psf_model == "gaussian":
            psf = PSF(psf_type="GAUSSIAN", fwhm=fwhm, truncation=6, pixel_size=pixel_scale)
        else:
            raise NotImplementedError
        im = ImageModel(data, psf, lens_model_class=LensModel(["SIE", "SHEAR"]),
                        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                        kwargs_numerics={"supersampling_factor": supersample, "supersampling_convolution": True})
        model = (im, fwhm)
    g = lambda k: float(p.get(k, np.zeros(len(p["theta_e"])))[i])  # noqa: E731
    kw_lens = [{"theta_E": g("theta_e"), "e1": g("lens_e1"), "e2": g("lens_e2"),
                "center_x": g("lens_x") + half, "center_y": g("lens_y") + half},
               {"gamma1": g("shear_g1"), "gamma2": g("shear_g2"), "ra_0": g("lens_x") + half,
                "dec_0": g("lens_y") + half}]
    amp_unit = 1.0 / float(SersicElliptic().total_flux(amp=1, R_sersic=g("src_reff"), n_sersic=g("src_n")))
    kw_src = [{"amp": flux * amp_unit, "R_sersic": g("src_reff"), "n_sersic": g("src_n"), "e1": g("src_e1"),
               "e2": g("src_e2"), "center_x": g("src_x") + half, "center_y": g("src_y") + half}]
    img = model[0].image(kwargs_lens=kw_lens, kwargs_source=kw_src)
    return np.asarray(img), model


def random_params(n: int, seed: int = 0, *, reff=(0.1, 0.6), theta_e=(0.5, 3.0), nb: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    te = rng.uniform(*theta_e, n)
    beta = rng.uniform(0.05, 0.9, n) * te
    ang = rng.uniform(0, 2 * np.pi, n)
    return {"theta_e": te, "lens_e1": rng.normal(0, 0.12, n), "lens_e2": rng.normal(0, 0.12, n),
            "lens_x": rng.normal(0, 0.05, n), "lens_y": rng.normal(0, 0.05, n),
            "shear_g1": rng.normal(0, 0.03, n), "shear_g2": rng.normal(0, 0.03, n),
            "src_x": beta * np.cos(ang), "src_y": beta * np.sin(ang), "src_reff": rng.uniform(*reff, n),
            "src_n": rng.uniform(0.7, 2.5, n), "src_e1": rng.normal(0, 0.15, n), "src_e2": rng.normal(0, 0.15, n),
            "psf_fwhm": rng.uniform(1.0, 1.8, (n, nb))}
