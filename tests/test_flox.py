"""flox class summaries and binned reductions equal plain numpy references computed from the pixels."""

import numpy as np
import pytest

from lensarray.cube import SPLIT_NAMES
from lensarray.diagnostics import toy_cube
from lensarray.diagnostics.systematics import INVVAR_QUANTILES
from lensarray.statistics import THETA_E_EDGES, bin_index


@pytest.fixture(scope="module")
def cube():
    ds = toy_cube(96, kind="ring", seed=21, leak="nan", chunk_pairs=16)
    ds = ds.load()
    # planted extras: mask bits 0 and 5 on some pairs, a no-data patch with flux in a few lens
    # stamps, one +inf host pixel, hard negatives for the is_lens grouping
    mb = ds["maskbits"].values.copy()
    mb[::7, 10:14, 20:30] |= 1 | (1 << 5)
    ds["maskbits"] = (ds["maskbits"].dims, mb)
    iv = ds["invvar"].values.copy()
    iv[::5, 1, 50:53, 50:53] = 0.0
    ds["invvar"] = (ds["invvar"].dims, iv)
    arc = ds["arc"].values.copy()
    arc[::10, 1, 50:53, 50:53] += 0.1
    ds["arc"] = (ds["arc"].dims, arc)
    host = ds["host"].values.copy()
    host[3, 0, 1, 1] = np.inf
    ds["host"] = (ds["host"].dims, host)
    neg = ds["hard_negative"].values.copy()
    neg[::9] = 1
    ds["hard_negative"] = (("pair",), neg)
    return ds.chunk({"pair": 16})


def _reference(ds):
    """Per-sample numbers straight from the pixels (numpy only)."""
    host = ds["host"].values.astype(np.float64)
    arc = ds["arc"].values.astype(np.float64)
    iv = ds["invvar"].values.astype(np.float64)
    mb = ds["maskbits"].values.astype(np.int64)
    n = host.shape[0]
    pos = np.where(iv > 0, iv, np.nan).reshape(n, 3, -1)
    with np.errstate(all="ignore"):
        inv_med = np.nanmedian(pos, axis=2)
    bits = np.stack([((mb >> b) & 1).reshape(n, -1).mean(axis=1) for b in range(17)], axis=1)
    bad = ((iv <= 0).any(axis=1) | (mb != 0)).reshape(n, -1).mean(axis=1)
    counts = {}
    for r, st in (("lens", host + arc), ("control", host)):
        counts[r] = {
            "nan_count": np.isnan(st).sum(axis=(1, 2, 3)),
            "inf_count": np.isinf(st).sum(axis=(1, 2, 3)),
            "nodata_flux_count": ((iv <= 0) & (st != 0)).sum(axis=(1, 2, 3)),
        }
    return inv_med, bits, bad, counts


def test_summary_by_role_and_split_equals_numpy(cube):
    inv_med, bits, bad, counts = _reference(cube)
    split = cube["split"].values
    got = cube.lensarray.summarize(by=("role", "split")).compute()
    assert list(got["role"].values) == ["lens", "control"]
    assert counts["lens"]["nan_count"].sum() > 0 and counts["lens"]["nodata_flux_count"].sum() > 0
    for code, name in enumerate(SPLIT_NAMES):
        sel = split == code
        assert str(got["split_name"].sel(split=code).values) == name
        for role in ("lens", "control"):
            g = got.sel(split=code, role=role)
            assert int(g["n"]) == sel.sum()
            np.testing.assert_allclose(g["maskbit_frac"].values, bits[sel].mean(axis=0), rtol=1e-6)
            np.testing.assert_allclose(float(g["bad_pixel_frac"]), bad[sel].mean(), rtol=1e-6)
            for k in ("nan_count", "inf_count", "nodata_flux_count"):
                assert int(g[k]) == counts[role][k][sel].sum(), (k, role, name)
            ref_q = np.quantile(inv_med[sel], INVVAR_QUANTILES, axis=0).T  # (band, quantile)
            np.testing.assert_allclose(
                g["invvar_median_quantile"].transpose("band", "quantile").values, ref_q, rtol=1e-12
            )


def test_summary_by_is_lens_counts_samples(cube):
    _, _, bad, counts = _reference(cube)
    neg = cube["hard_negative"].values
    got = cube.lensarray.summarize(by=("is_lens",)).compute()
    positive = neg == 0
    assert int(got["n"].sel(is_lens=True)) == positive.sum()
    assert int(got["n"].sel(is_lens=False)) == positive.size + (~positive).sum()
    ref = counts["lens"]["nan_count"][positive].sum()
    assert int(got["nan_count"].sel(is_lens=True)) == ref
    neg_ref = counts["lens"]["nan_count"][~positive].sum() + counts["control"]["nan_count"].sum()
    assert int(got["nan_count"].sel(is_lens=False)) == neg_ref
    both = np.concatenate([bad, bad[~positive]])
    np.testing.assert_allclose(float(got["bad_pixel_frac"].sel(is_lens=False)), both.mean(), rtol=1e-6)


def test_summary_of_the_diagnose_table_equals_the_lazy_one(cube):
    from lensarray.diagnostics import pair_table
    from lensarray.diagnostics.systematics import class_summary

    lazy = cube.lensarray.summarize(by=("split", "role")).compute()
    table = class_summary(pair_table(cube, progress=False), ("split", "role"))
    for k in lazy.data_vars:
        np.testing.assert_array_equal(lazy[k].values, table[k].values)


@pytest.mark.parametrize("func, ref", [("nanmedian", np.median), ("nanmean", np.mean), ("count", np.size)])
def test_binned_equals_numpy_with_the_last_bin_closed(cube, func, ref):
    ds = cube.load()
    te = ds["theta_e"].values.astype(np.float64).copy()
    te[0] = THETA_E_EDGES[-1]  # on the last edge: counted in the last bin
    te[1] = THETA_E_EDGES[0] - 0.1  # below the first edge: left out
    te[2] = 2.5  # an inner edge belongs to the upper bin
    ds["theta_e"] = (("pair",), te.astype(np.float32))
    cff = ds["core_flux_frac"].values.astype(np.float64)
    got = ds.chunk({"pair": 16}).lensarray.binned("core_flux_frac", "theta_e", func=func).compute()
    assert got.dims == ("theta_e_bin", "band")
    idx = bin_index(ds["theta_e"].values, THETA_E_EDGES)
    assert idx[0] == len(THETA_E_EDGES) - 2 and idx[1] == -1 and idx[2] == THETA_E_EDGES.index(2.5)
    for i in range(len(THETA_E_EDGES) - 1):
        for b in range(3):
            v = cff[idx == i, b]
            v = v[np.isfinite(v)]
            expect = ref(v) if v.size else (0 if func == "count" else np.nan)
            np.testing.assert_allclose(got.values[i, b], expect, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(got["theta_e_lo"].values, THETA_E_EDGES[:-1])


def test_bin_index_rule():
    edges = (0.0, 1.0, 2.0)
    np.testing.assert_array_equal(bin_index([-0.1, 0.0, 0.5, 1.0, 2.0, 2.1, np.nan], edges), [-1, 0, 0, 1, 1, -1, -1])
