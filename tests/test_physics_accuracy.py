"""The renderer over the whole accepted parameter range, region by region, against a converged
reference independent of its kernel (lenstronomy's SIE + SHEAR and SERSIC_ELLIPSE integrated by
adaptive cubature, each cell convolved with the exactly pixel-integrated PSF; see
``_lenstronomy_ref.reference_image``). Small stamps (40 px), three per region, one band; the
references are computed once per session. The full-size table is ``benchmarks/bench_render.py
--accuracy``."""

import functools

import numpy as np
import pytest

from lensarray.config import ConfigError, RunConfig
from lensarray.physics import render_arcs, render_unit_arcs

pytest.importorskip("lenstronomy")
from _lenstronomy_ref import reference_image, region_params  # noqa: E402

SIZE = 40
N_PER_REGION = 3
REGIONS = ("default", "cusp", "compact", "elliptical", "narrow_psf", "caustic", "wide")


@functools.cache
def _cases(region: str, psf_model: str = "gaussian", psf_beta: float = 3.5):
    p = region_params(region, N_PER_REGION, seed=1000 + REGIONS.index(region), nb=1, size=SIZE)
    fine = [
        reference_image(p, i, size=SIZE, tol=1e-7, cells=16, psf_model=psf_model, psf_beta=psf_beta)[0]
        for i in range(N_PER_REGION)
    ]
    coarse = [
        reference_image(p, i, size=SIZE, tol=1e-6, cells=8, psf_model=psf_model, psf_beta=psf_beta)[0]
        for i in range(N_PER_REGION)
    ]
    return p, np.array(fine), np.array(coarse)


def _errors(img, ref):
    peak = ref.max(axis=(1, 2, 3))
    pix = np.abs(img - ref).max(axis=(1, 2, 3)) / peak
    flux = np.abs(img.sum(axis=(1, 2, 3)) / ref.sum(axis=(1, 2, 3)) - 1)
    return pix, flux, (img.min(axis=(1, 2, 3)) / peak)


@pytest.mark.parametrize("region", REGIONS)
def test_reference_is_converged(region):
    _, fine, coarse = _cases(region)
    pix, _, _ = _errors(coarse, fine)  # ten times the cubature tolerance, half the cells
    assert pix.max() <= 2e-3, pix


@pytest.mark.parametrize("region", REGIONS)
def test_renderer_within_1pct_of_peak_and_half_pct_flux(region):
    p, ref, _ = _cases(region)
    img, _, est = render_unit_arcs(p, size=SIZE, bands=("r",), return_error=True)
    pix, flux, low = _errors(img, ref)
    print(
        f"{region}: worst pixel {pix.max():.4f} of peak, flux {flux.max():.4f}, "
        f"estimated {est['pixel_frac_peak'].max():.4f}"
    )
    assert pix.max() <= 0.01, pix
    assert flux.max() <= 0.005, flux
    assert low.min() >= -1e-6  # no negative pixels (float32 round-off aside)


@pytest.mark.parametrize("region", ("default", "compact", "narrow_psf"))
@pytest.mark.parametrize("beta", (2.5, 4.5))
def test_moffat_within_1pct_of_peak_and_half_pct_flux(region, beta):
    p, ref, coarse = _cases(region, "moffat", beta)
    assert _errors(coarse, ref)[0].max() <= 2e-3
    img, _ = render_unit_arcs(p, size=SIZE, bands=("r",), psf_model="moffat", psf_beta=beta)
    pix, flux, low = _errors(img, ref)
    assert pix.max() <= 0.01, pix
    assert flux.max() <= 0.005, flux
    assert low.min() >= -1e-6


def test_symmetric_input_renders_symmetric_and_non_negative():
    """Round lens at the origin, cusped compact source on the diagonal, narrowest accepted PSF:
    the image equals its transpose; a source on the x axis gives an image mirror-symmetric in y."""
    base = {
        "theta_e": [1.3],
        "lens_e1": [0.0],
        "lens_e2": [0.0],
        "src_reff": [0.05],
        "src_n": [4.0],
        "src_e1": [0.0],
        "src_e2": [0.0],
        "psf_fwhm": [[2.0 * 0.262]],
    }
    diag, _ = render_unit_arcs({**base, "src_x": [0.21], "src_y": [0.21]}, size=SIZE, bands=("r",))
    img = diag[0, 0]
    assert np.abs(img - img.T).max() <= 1e-4 * img.max()
    assert img.min() >= 0
    axis, _ = render_unit_arcs({**base, "src_x": [0.3], "src_y": [0.0]}, size=SIZE, bands=("r",))
    a = axis[0, 0][1:]  # rows 1..39 mirror about row 20 (the origin's row)
    assert np.abs(a - a[::-1]).max() <= 1e-4 * a.max()
    assert axis.min() >= 0


def test_error_estimate_bounds_the_error_and_follows_the_tolerance():
    p, ref, _ = _cases("compact")
    loose_img, _, loose = render_unit_arcs(p, size=SIZE, bands=("r",), tolerance=0.1, return_error=True)
    tight_img, _, tight = render_unit_arcs(p, size=SIZE, bands=("r",), tolerance=1e-3, return_error=True)
    for img, est in ((loose_img, loose), (tight_img, tight)):
        pix, flux, _ = _errors(img, ref)
        assert np.all(est["pixel_frac_peak"][:, 0] >= 0.5 * pix), (est["pixel_frac_peak"], pix)
        assert np.all(est["flux_frac"] >= 0.5 * flux)
    assert tight["pixel_frac_peak"].max() < loose["pixel_frac_peak"].max()
    assert _errors(tight_img, ref)[0].max() < _errors(loose_img, ref)[0].max()  # and the error itself
    assert np.all(tight["evaluations"] > loose["evaluations"])


def test_render_arcs_forwards_every_setting():
    p, _, _ = _cases("default")
    p = {**p, "src_mag": np.full((N_PER_REGION, 1), 21.0)}
    flux = 10 ** ((22.5 - 21.0) / 2.5)
    for kw in (
        {"method": "dense", "supersample": 8},
        {"tolerance": 1e-3},
        {"psf_model": "moffat", "psf_beta": 4.0},
        {"supersample": 12},
    ):
        unit, _ = render_unit_arcs(p, size=SIZE, bands=("r",), **kw)
        arcs = render_arcs(p, size=SIZE, bands=("r",), **kw)
        np.testing.assert_allclose(arcs, unit * flux, rtol=1e-5)
    arcs, est = render_arcs(p, size=SIZE, bands=("r",), return_error=True)
    assert est["pixel_frac_peak"].shape == (N_PER_REGION, 1)
    for kw, field in (
        ({"tolerance": 0.0}, "tolerance"),
        ({"method": "x"}, "method"),
        ({"psf_model": "moffat", "psf_beta": 1.2}, "psf_beta"),
    ):
        with pytest.raises(ValueError, match=field) as exc:
            render_arcs(p, size=SIZE, bands=("r",), **kw)
        assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "key, value, field",
    [
        ("src_n", 4.5, "src_n"),
        ("src_reff", 0.03, "src_reff"),
        ("theta_e", 4.0, "theta_e"),
        ("psf_fwhm", [[0.4]], "psf_fwhm"),
    ],
)
def test_renderer_refuses_outside_the_verified_range_in_one_line(key, value, field):
    p = {
        "theta_e": [1.0],
        "lens_e1": [0.0],
        "lens_e2": [0.0],
        "src_x": [0.2],
        "src_y": [0.0],
        "src_reff": [0.2],
        "src_n": [1.0],
        "src_e1": [0.0],
        "src_e2": [0.0],
        "psf_fwhm": [[1.2]],
        "src_mag": [[21.0]],
    }
    p[key] = value if key == "psf_fwhm" else [value]
    for fn in (render_unit_arcs, render_arcs):
        with pytest.raises(ValueError, match=field) as exc:
            fn(p, size=SIZE, bands=("r",))
        assert "allowed" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "dotted, value",
    [
        ("source.n_max", 6.0),
        ("source.reff_min", 0.01),
        ("lens.theta_e_max", 5.0),
        ("lens.offset_sigma", 0.5),
        ("psf.moffat_beta", 1.5),
        ("render.tolerance", 0.5),
    ],
)
def test_config_refuses_outside_the_verified_range(dotted, value):
    with pytest.raises(ConfigError, match=dotted.replace(".", r"\.") + r" = .*allowed range"):
        RunConfig().replace(**{dotted: value}).validate()
