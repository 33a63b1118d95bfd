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


@pytest.mark.parametrize("mode", ["uniform", "psf"])
def test_stamp_result_independent_of_batching(mode):
    # radii differ per stamp, so a batch's largest radius depends on which stamps are in it:
    # each stamp's result must not
    st = _stamps(n=12)
    ids = np.arange(500, 512)
    fwhm = np.linspace(1.0, 3.5, 12)
    kw = dict(mode=mode, r_mask=(3, 7), psf_fwhm=fwhm if mode == "psf" else None, seed=5)
    whole, radii = centre_mask(st, sample_ids=ids, return_radii=True, **kw)
    assert np.ptp(radii) > 1.0
    small = int(np.argmin(radii[:, 0]))
    for chunk in (1, 5):
        parts = []
        for i in range(0, 12, chunk):
            kwi = dict(kw, psf_fwhm=fwhm[i : i + chunk] if mode == "psf" else None)
            parts.append(centre_mask(st[i : i + chunk], sample_ids=ids[i : i + chunk], **kwi))
        assert np.array_equal(np.concatenate(parts), whole)
    alone = centre_mask(
        st[small : small + 1],
        sample_ids=ids[small : small + 1],
        **dict(kw, psf_fwhm=fwhm[small : small + 1] if mode == "psf" else None),
    )
    assert np.array_equal(alone[0], whole[small])


@pytest.mark.parametrize("side", [10, 11, 30])
def test_central_side_equals_slice_of_full_result(side):
    from lensarray.geometry import central_slice

    st = _stamps(n=5)
    st[1, 2, 32, 55] = np.nan  # a NaN donor in the annulus (r = 23)
    ids = np.arange(5) * 2 + 1
    full = centre_mask(st, mode="uniform", r_mask=(3, 7), seed=2, sample_ids=ids)
    crop = centre_mask(st, mode="uniform", r_mask=(3, 7), seed=2, sample_ids=ids, central_side=side)
    sl = central_slice(64, side)
    assert crop.shape == (5, 3, side, side)
    assert np.array_equal(crop, full[..., sl, sl])
    assert crop.max() < 1.0  # the bright core is gone from the square too
    with pytest.raises(ValueError, match="central_side"):
        centre_mask(st, central_side=65)


def test_centre_mask_equals_the_numpy_generator_reference():
    """Per-stamp streams drawn in numba (lensarray.streams) and the numba fill give exactly what
    one numpy Generator per stamp gave, in every mode, for the batch stream, big ids, windows,
    and stamps whose annulus holds NaN / inf (the redraw path)."""
    from _centre_mask_ref import centre_mask as reference

    rng = np.random.default_rng(5)
    for size in (64, 24):
        st = rng.normal(size=(12, 3, size, size)).astype(np.float32)
        bad = st.copy()
        bad[3, 1, :, : size // 2] = np.nan
        bad[7, 0] = np.nan
        bad[9, 2, 0:4, :] = np.inf
        bad[11][rng.random((3, size, size)) < 0.3] = np.nan
        for data in (st, bad):
            for kw in (
                {"mode": "uniform", "r_mask": (3.0, 7.0)},
                {"mode": "fixed", "r_mask": 5.0},
                {"mode": "psf", "psf_fwhm": rng.uniform(1, 2, (12, 3))},
            ):
                for ids in (np.arange(12) * 2 + 1, None, rng.integers(0, 2**40, 12)):
                    for side in (None, 17):
                        got = centre_mask(data, seed=3, sample_ids=ids, central_side=side, return_radii=True, **kw)
                        want = reference(data, seed=3, sample_ids=ids, central_side=side, return_radii=True, **kw)
                        np.testing.assert_array_equal(got[0], want[0])
                        np.testing.assert_array_equal(got[1], want[1])


def test_stamp_streams_equal_numpy_generators():
    from numba import njit

    from lensarray.streams import bounded_uint32, next_double, stamp_states

    @njit
    def draws(states, n_values, counts, out_u, out_i):
        for s in range(states.shape[0]):
            out_u[s] = 3.0 + 4.0 * next_double(states[s])
            for j in range(counts[s]):
                out_i[s, j] = bounded_uint32(states[s], n_values - 1)

    rng = np.random.default_rng(3)
    for seed in (0, 7, 2**32 + 5, 2**70 + 1):
        ids = np.concatenate([[0, 1, 2**32 - 1, 2**32, 2**40 + 3], rng.integers(0, 2**62, 20)]).astype(np.uint64)
        for n_values in (2, 3, 1257, 2**31 + 11, 2**32 - 1):
            counts = rng.integers(0, 30, ids.size)
            u, got = np.empty(ids.size), np.zeros((ids.size, 30), np.int64)
            draws(stamp_states(seed, ids), n_values, counts, u, got)
            for s, i in enumerate(ids):
                g = np.random.default_rng(np.random.SeedSequence([seed, int(i)]))
                assert g.uniform(3.0, 7.0) == u[s]
                np.testing.assert_array_equal(got[s, : counts[s]], g.integers(0, n_values, size=counts[s]))
