"""Centre-mask ablation transform: geometry, donor statistics, determinism, bad input."""

import numpy as np
import pytest

from lensarray.diagnostics.ablation import centre_mask


def _stamps(n=6, nb=3, size=64, seed=1):
    rng = np.random.default_rng(seed)
    st = rng.normal(0.0, 0.01, size=(n, nb, size, size)).astype(np.float32)
    c = size // 2
    st[:, :, c - 2 : c + 3, c - 2 : c + 3] += 100.0  # a very bright core to be hidden
    return st


def test_fixed_radius_replaces_core_only_with_annulus_values():
    st = _stamps()
    out = centre_mask(st, r_mask=5.0, mode="fixed", seed=3)
    assert out.shape == st.shape and out.dtype == st.dtype
    yy, xx = np.mgrid[0:64, 0:64]
    r = np.hypot(yy - 32, xx - 32)
    inside, outside = r < 5.0, r >= 5.0
    assert np.array_equal(out[..., outside], st[..., outside])
    assert out[..., inside].max() < 1.0  # bright core gone
    # every filled value is one of the same stamp-band's annulus pixels
    ann = (r >= 20) & (r < 30)
    for i in range(st.shape[0]):
        for b in range(st.shape[1]):
            assert np.isin(out[i, b][inside], st[i, b][ann]).all()
    assert np.array_equal(st[0, 0, 32, 32], np.float32(st[0, 0, 32, 32]))  # input untouched
    assert st[0, 0, 32, 32] > 50


def test_deterministic_given_seed_and_batch_independent_with_ids():
    st = _stamps(n=8)
    ids = np.arange(100, 108)
    a = centre_mask(st, mode="uniform", r_mask=(3, 7), seed=11, sample_ids=ids)
    b = centre_mask(st, mode="uniform", r_mask=(3, 7), seed=11, sample_ids=ids)
    assert np.array_equal(a, b)
    part = centre_mask(st[3:5], mode="uniform", r_mask=(3, 7), seed=11, sample_ids=ids[3:5])
    assert np.array_equal(part, a[3:5])
    c = centre_mask(st, mode="uniform", r_mask=(3, 7), seed=12, sample_ids=ids)
    assert not np.array_equal(a, c)


def test_uniform_radii_in_range_and_psf_mode_radius():
    st = _stamps(n=200, nb=1, size=32)
    _, radii = centre_mask(st, mode="uniform", r_mask=(3, 7), seed=0, return_radii=True, annulus=(10, 15))
    assert radii.min() >= 3 and radii.max() <= 7 and radii.std() > 0.8
    fwhm = np.array([1.31] * 200)
    out, radii = centre_mask(
        st, mode="psf", psf_fwhm=fwhm, pixel_scale=0.262, seed=0, return_radii=True, annulus=(10, 15)
    )
    assert np.allclose(radii, 0.5 * 1.31 / 0.262)  # 2.5 px: r=2 masked, r=3 kept
    assert out[0, 0, 16, 18].item() != st[0, 0, 16, 18].item()
    assert out[0, 0, 16, 19].item() == st[0, 0, 16, 19].item()


def test_nan_donors_are_skipped():
    st = _stamps(n=2, nb=1)
    yy, xx = np.mgrid[0:64, 0:64]
    r = np.hypot(yy - 32, xx - 32)
    st[0, 0][(r >= 20) & (r < 25)] = np.nan
    out = centre_mask(st, r_mask=4, seed=1)
    assert np.isfinite(out[0, 0][r < 4]).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="box"), "mode"),
        (dict(mode="psf"), "psf_fwhm"),
        (dict(mode="fixed", r_mask=-1), "r_mask"),
        (dict(mode="uniform", r_mask=(7, 3)), "r_mask"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        centre_mask(_stamps(n=1), **kwargs)
