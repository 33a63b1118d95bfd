"""Diagnostics on small in-memory cubes with known answers, plus unit checks of each statistic."""

import numpy as np
import pytest
from scipy import stats

from lensarray.diagnostics import (
    arc_snr_distribution,
    cliffs_delta,
    compare_brightness,
    core_flux_fraction,
    core_lr_auc,
    diagnose,
    inner_image_summary,
    metadata_leakage,
    pair_table,
    sis_inner_image_radius,
    systematics_by_class,
    toy_cube,
    visibility_proxy,
)
from lensarray.diagnostics.core_lr import oof_scores
from lensarray.diagnostics.features import lr_subsample
from lensarray.testing import shared_data


@pytest.fixture(scope="module")
def ring_result():
    ds = toy_cube(160, kind="ring", seed=5)
    null = toy_cube(160, kind="null", seed=5)
    return diagnose(ds, null_ds=null, progress=False, n_boot=50)


def _gate(res, name):
    return next(g for g in res["gates"] if g["name"] == name)


# -- known answers on whole cubes ----------------------------------------------------------


def test_clean_ring_cube_passes_every_gate(ring_result):
    res, _ = ring_result
    assert {g["name"] for g in res["gates"]} == {
        "core_lr_auc",
        "mask_edge",
        "null_identity",
        "metadata_leak_auc",
        "systematics_role_flags",
    }
    assert res["passed"], res["gates"]
    assert res["core_lr"]["auc"] < 0.65
    assert res["null_identity"]["passed"]  # identical stamps through the whole training path
    # the box (as before the disc became the gate's region); on the disc, lens and control differ by
    # ~1e-4 of the arc and the pair bootstrap's within-pair comparisons bias it above the point AUC
    box = res["core_lr_regions"]["box"]
    lo, hi = box["ci"]
    assert lo <= box["auc"] <= hi
    # arcs outside the core: measured core flux fraction tiny and equal to the stored one
    assert res["core_flux"]["bands"]["r"]["median"] < 0.01
    assert res["core_flux"]["max_abs_diff_vs_stored"] < 1e-5
    assert res["arc_snr"]["max_rel_diff_vs_measured"] < 1e-4
    assert res["memory"]["process_peak_rss_mib"] > 0


def test_core_only_arcs_fail_the_core_lr_gate_and_masking_removes_it():
    ds = toy_cube(160, kind="core", seed=6)
    res, _ = diagnose(ds, progress=False, n_boot=30)
    gate = _gate(res, "core_lr_auc")
    assert not gate["passed"] and gate["value"] > 0.9
    assert not res["passed"]
    assert res["core_flux"]["bands"]["r"]["median"] > 0.9
    # the centre-masked stamps no longer carry the shortcut
    assert res["core_lr_masked"]["auc"] < 0.65


def test_null_cube_passes_the_core_lr_gate():
    res, _ = diagnose(toy_cube(96, kind="null", seed=12), progress=False, n_boot=20, ablation=None)
    gate = _gate(res, "core_lr_auc")
    assert gate["passed"] and gate["value"] == pytest.approx(0.5)


def test_null_cube_passes_null_gate_but_core_cube_as_null_fails():
    import json

    from lensarray.errors import BadInputError

    ring = toy_cube(96, kind="ring", seed=7)
    core = toy_cube(96, kind="core", seed=7)
    with pytest.raises(BadInputError, match="not a null-injection cube"):  # not a null twin: refused
        diagnose(ring, null_ds=core, progress=False, n_boot=20, ablation=None)
    # labelled a null twin (same pairs) but its "arcs" are not zero: the identity gate must fail
    fake_null = core.copy()
    cfg = json.loads(core.attrs["config"])
    cfg["run"]["null"] = True
    fake_null.attrs = {**core.attrs, "config": json.dumps(cfg)}
    res, _ = diagnose(core, null_ds=fake_null, progress=False, n_boot=20, ablation=None)
    g = _gate(res, "null_identity")
    assert g["passed"] is False and g["value"] >= 1  # lens and control differ from the loader on


@pytest.mark.parametrize(
    "leak, flagged, sys_flag",
    [
        ("coordinate", "exposure_id", True),
        ("nodata", "nodata_flux_count", True),
        ("nan", "nan_count", True),
    ],
)
def test_planted_per_sample_leaks_are_flagged(leak, flagged, sys_flag):
    ds = toy_cube(96, kind="ring", seed=8, leak=leak)
    table = pair_table(ds, progress=False)
    lk = metadata_leakage(table, ds)
    assert flagged in lk["flagged"]
    sysres = systematics_by_class(table, ds).to_dict()
    assert (sysres["n_flags"] > 0) == sys_flag
    assert any(flagged in f for f in sysres["flags"])


def test_planted_invvar_difference_of_hard_negatives_is_flagged():
    ds = toy_cube(400, kind="ring", seed=9, leak="negatives_invvar")
    table = pair_table(ds, progress=False)
    lk = metadata_leakage(table, ds)
    rows = {a["name"]: a for a in lk["audited"]}
    assert rows["invvar_sum[r]"]["flagged"] and rows["invvar_sum[r]"]["auc_sym"] > 0.7
    # host facts drawn identically for negatives and lenses stay near 0.5
    assert rows["host_reff"]["auc_sym"] < 0.6
    assert systematics_by_class(table, ds).n_flags == 0  # roles still identical


def test_clean_cube_has_no_leak_and_no_role_flags(ring_result):
    res, _ = ring_result
    assert res["leakage"]["flagged"] == []
    assert res["leakage"]["max_auc_sym"] == pytest.approx(0.5)
    assert res["systematics"]["flags"] == []
    # the signal statistics do see the arc (that is the point of a lens finder)
    sig = {s["name"]: s["auc"] for s in res["leakage"]["signal"]}
    assert sig["visibility"] > 0.8


def test_pair_table_independent_of_chunking():
    a = pair_table(toy_cube(64, seed=10, chunk_pairs=8), progress=False, lr_index=np.arange(0, 64, 3))
    b = pair_table(toy_cube(64, seed=10, chunk_pairs=64), progress=False, lr_index=np.arange(0, 64, 3))
    assert set(a.data_vars) == set(b.data_vars) and "central" in a and "visibility" in a
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values)


def test_pixel_pass_of_a_built_cube_is_one_fused_task_per_chunk(small_cube):
    """Every zarr read of a chunk (images and stored per-pair variables) is fused into its
    measure task: no separate read task a scheduler could place on another worker."""
    import dask
    from dask._task_spec import DataNode

    from lensarray.cube import open_cube
    from lensarray.diagnostics.audit import DIAGNOSE_STORED
    from lensarray.diagnostics.features import _blocks, measure_spec, stored_pair_vars

    ds = open_cube(small_cube)
    stored = stored_pair_vars(ds, DIAGNOSE_STORED)
    assert len(stored) >= 10
    blocks, chunks, _ = _blocks(ds, measure_spec(ds), np.arange(ds.sizes["pair"]), None, stored)
    assert len(blocks) == len(chunks) == 4
    for b in blocks:
        (opt,) = dask.optimize(b)
        graph = dict(opt.__dask_graph__())
        # besides the one task: data, i.e. the opened zarr arrays and the chunk's pair ids and flags
        tasks = [k for k, v in graph.items() if not isinstance(v, DataNode)]
        assert len(tasks) == 1 and "measure_block" in str(tasks[0]), tasks
        inputs = {"host", "arc", "invvar", "maskbits", "theta_e", "psf_fwhm", *stored}
        assert len(graph) == 1 + len(inputs) + 1  # the task, one opened array per input, the flags


def test_store_source_is_found_only_for_a_plain_read_of_a_whole_stored_array(small_cube):
    from lensarray import lazy_cube
    from lensarray.cube import open_cube
    from lensarray.diagnostics._compute import store_source
    from lensarray.diagnostics.features import cube_config

    ds = open_cube(small_cube)
    src = store_source(ds["src_reff"].data)
    assert src is not None
    np.testing.assert_array_equal(np.asarray(src), ds["src_reff"].values)
    assert store_source(ds["split"].data) is not None  # integer codes too
    for other in (
        ds.isel(pair=[0, 5, 2])["src_reff"].data,  # a selection
        (ds["src_reff"] * 2).data,  # arithmetic on the read
        ds["src_reff"].values,  # in memory
        lazy_cube(cube_config(ds))["src_reff"].data,  # rendered, not stored
    ):
        assert store_source(other) is None


def test_stored_variables_read_whole_equal_the_in_task_read(small_cube, monkeypatch):
    """pair_table reads plain stored per-pair variables whole in the client: the table equals the
    one whose tasks read every variable, for the whole cube and a shuffled selection of it."""
    from lensarray.cube import open_cube
    from lensarray.diagnostics import features
    from lensarray.diagnostics.audit import DIAGNOSE_STORED

    ds = open_cube(small_cube)
    lr = np.arange(0, ds.sizes["pair"], 7)
    calls = []
    real = features.store_source
    monkeypatch.setattr(features, "store_source", lambda d: calls.append(1) or real(d))
    fast = pair_table(ds, progress=False, lr_index=lr, stored=DIAGNOSE_STORED)
    assert len(calls) >= 8  # the whole-array path was taken
    monkeypatch.setattr(features, "store_source", lambda d: None)
    slow = pair_table(ds, progress=False, lr_index=lr, stored=DIAGNOSE_STORED)
    assert set(fast.variables) == set(slow.variables) and "split" in fast and "host_reff" in fast
    for k in fast.variables:
        np.testing.assert_array_equal(fast[k].values, slow[k].values, err_msg=k)
    monkeypatch.setattr(features, "store_source", real)
    pick = np.random.default_rng(3).permutation(ds.sizes["pair"])[:40]
    sub = pair_table(ds.isel(pair=pick), progress=False, stored=DIAGNOSE_STORED)
    for k in ("split", "host_reff", "src_reff", "hard_negative", "theta_e"):
        np.testing.assert_array_equal(sub[k].values, fast[k].values[pick], err_msg=k)


def test_gallery_read_beside_the_pixel_pass_equals_the_read_after_it(small_cube, monkeypatch):
    """diagnose reads the report's example stamps while the pixel pass runs when arc_snr and
    hard_negative are plain store reads; the gallery equals the one read from the finished table,
    and a selected cube (no plain reads) takes the after-pass path."""
    from lensarray.cube import open_cube
    from lensarray.diagnostics import audit

    ds = open_cube(small_cube)
    taken = []
    real = audit._examples_during_pass
    monkeypatch.setattr(audit, "_examples_during_pass", lambda d: taken.append(f := real(d)) or f)
    _, early = diagnose(ds, progress=False, n_boot=10)
    assert taken and taken[0] is not None
    monkeypatch.setattr(audit, "_examples_during_pass", lambda d: None)
    _, late = diagnose(ds, progress=False, n_boot=10)
    assert set(early["examples"]) == set(late["examples"])
    for k, v in early["examples"].items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(late["examples"][k]), err_msg=k)
    monkeypatch.setattr(audit, "_examples_during_pass", real)
    assert real(ds.isel(pair=np.arange(10))) is None


def test_diagnose_under_a_distributed_client_records_worker_memory():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc,
        distributed.Client(lc),
    ):
        res, _ = diagnose(toy_cube(48, seed=11), progress=True, n_boot=10, ablation=None)
    assert "worker_peak_rss_mib" in res["memory"] and len(res["memory"]["worker_peak_rss_mib"]) == 1
    assert res["core_lr"]["n_pairs"] == 48


# -- unit checks -----------------------------------------------------------------------------


def test_core_flux_fraction_geometry():
    size = 64
    img = np.zeros((3, size, size))
    img[0, 32, 32] = 2.0  # the stamp origin
    img[1, 32, 32 + 10] = 1.0  # 10 px out
    img[2] = 1.0  # uniform
    yy, xx = np.mgrid[0:size, 0:size]
    n_core = np.sum(np.hypot(yy - 32, xx - 32) < 5)
    f = core_flux_fraction(img, core_radius=5)
    np.testing.assert_allclose(f, [1.0, 0.0, n_core / size**2])
    assert n_core == 69  # pixel centres strictly inside r = 5


def test_core_lr_separable_and_unseparable_features():
    rng = np.random.default_rng(0)
    n = 200
    host = rng.normal(size=(n, 20))
    X = np.concatenate([host + np.r_[3.0, np.zeros(19)], host])
    y = np.r_[np.ones(n), np.zeros(n)]
    g = np.r_[np.arange(n), np.arange(n)]
    assert core_lr_auc(X, y, g, n_boot=20)["auc"] > 0.95
    X0 = np.concatenate([host, host])
    out = core_lr_auc(X0, y, g, theta_e=np.r_[np.full(n, 1.2), np.full(n, 1.2)], n_boot=20)
    assert out["auc"] == pytest.approx(0.5)
    assert [r["n_pairs"] for r in out["by_theta_e"]] == [0, 0, n, 0, 0, 0]


def test_group_folds_keep_pairs_together():
    """A feature that identifies the pair (not the role) must not be learnt across folds."""
    rng = np.random.default_rng(1)
    n = 300
    pair_code = rng.normal(size=(n, 5))
    X = np.concatenate([pair_code, pair_code])
    y = np.r_[rng.random(n) < 0.5, np.zeros(n, bool)]  # pair-level label noise
    g = np.r_[np.arange(n), np.arange(n)]
    s = oof_scores(X, y, g)
    assert abs(stats.spearmanr(s[:n], s[n:]).statistic - 1) < 1e-9  # same features -> same score
    assert core_lr_auc(X, y, g, n_boot=10)["auc"] < 0.6


def test_lr_subsample_is_deterministic_and_bounded():
    a = lr_subsample(10_000, 500, seed=3)
    assert a.size == 500 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, lr_subsample(10_000, 500, seed=3))
    np.testing.assert_array_equal(lr_subsample(20, 500), np.arange(20))


def test_sis_inner_image_and_summary():
    r = sis_inner_image_radius([1.0, 1.0, 2.0], [0.25, 1.5, 0.0])
    np.testing.assert_allclose(r, [0.75, np.nan, 2.0])
    s = inner_image_summary(np.array([1.0, 4.0, 6.0, np.nan]), np.array([1.0, 1.0, 2.0, 2.0]))
    assert s["frac_with_inner_image"] == 0.75
    assert s["frac_inner_lt_3px"] == 0.25 and s["frac_inner_lt_5px"] == 0.5


def test_visibility_proxy_sees_a_ring_not_the_noise():
    rng = np.random.default_rng(2)
    size, n = 64, 40
    yy, xx = np.mgrid[0:size, 0:size]
    rad = np.hypot(yy - 32, xx - 32)
    host = 5.0 * np.exp(-rad / 2.0)
    noise = rng.normal(0, 0.01, (n, size, size))
    ring = np.exp(-0.5 * ((rad - 9) / 1.0) ** 2) * (np.arctan2(yy - 32, xx - 32) > 0)
    ring *= 30 / np.sqrt(np.sum(ring**2 / 0.01**2))  # matched-filter S/N 30
    v_ctrl = visibility_proxy(host + noise, np.full(n, 9.0), np.full(n, 4.0))
    v_lens = visibility_proxy(host + ring + noise, np.full(n, 9.0), np.full(n, 4.0))
    assert abs(np.median(v_ctrl)) < 1.5
    assert np.all(v_lens > np.max(v_ctrl) + 3)


def test_arc_snr_distribution_fractions():
    v = np.r_[np.full(4, 1.0), np.full(4, 5.0), np.full(2, 10.0)]
    out = arc_snr_distribution(v, [0.8, 2, 8, 20], [0.4, 0.4, 0.2])
    assert [b["count"] for b in out["bins"]] == [4, 4, 2]
    assert out["max_abs_fraction_diff"] == pytest.approx(0.0)


def test_cliffs_delta_matches_brute_force_and_brightness_comparison():
    rng = np.random.default_rng(4)
    x, y = rng.normal(1.0, 1, 50), rng.normal(0.0, 1, 40)
    brute = np.mean(np.sign(x[:, None] - y[None, :]))
    assert cliffs_delta(x, y) == pytest.approx(brute)
    a = rng.lognormal(0, 0.3, 300)
    same = compare_brightness(a, a * 1.0, n_boot=200)
    assert same["ratio_of_medians"] == pytest.approx(1.0) and same["cliffs_delta"] == pytest.approx(0.0)
    twice = compare_brightness(2 * a[:150], a[150:], n_boot=200)
    assert 1.6 < twice["ratio_ci95"][0] < twice["ratio_of_medians"] < twice["ratio_ci95"][1] < 2.6
    assert twice["ks_pvalue"] < 1e-6 and twice["ad_pvalue"] <= 0.001


@pytest.mark.realdata
def test_real_anchor_cutouts_are_read():
    data = shared_data()
    if data is None:
        pytest.skip("shared data absent")
    from lensarray.diagnostics import anchor_brightness, read_anchor_cutouts

    cut = read_anchor_cutouts(str(data / "cutouts" / "dr10_npz"))
    assert len(cut) == 6 and all(img.shape == (101, 101) for _, img, _ in cut)
    b = anchor_brightness(cut)
    assert np.all(np.isfinite(b)) and np.all(b > 0)
    fits = read_anchor_cutouts(str(data / "cutouts" / "decals_fits" / "example_c.fits"))
    assert fits[0][2] == pytest.approx(0.143, rel=0.05)  # pixel scale read from the WCS


def test_nan_quantile_rows_equals_numpy_nanquantile():
    from lensarray.diagnostics.visibility import nan_quantile_rows

    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 3, 101))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[2, 1] = np.nan  # an all-NaN row
    for q in (0.0, 0.25, 0.5, 0.9, 1.0):
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            ref = np.nanquantile(x, q, axis=-1)
        np.testing.assert_allclose(nan_quantile_rows(x, q), ref, rtol=0, atol=1e-12, equal_nan=True)


def test_bootstrap_auc_equals_roc_auc_on_expanded_resamples():
    from sklearn.metrics import roc_auc_score

    from lensarray.diagnostics.core_lr import bootstrap_auc

    rng = np.random.default_rng(8)
    n_pairs = 300
    groups = np.repeat(np.arange(n_pairs), 2)
    labels = np.tile([1, 0], n_pairs)
    scores = np.round(rng.normal(size=2 * n_pairs) + 0.4 * labels, 1)  # many ties
    # the same draws, expanded into an explicit resample and scored by sklearn
    draw = np.random.default_rng(5)
    aucs = []
    for _ in range(40):
        g = draw.integers(0, n_pairs, n_pairs)
        idx = np.concatenate([np.flatnonzero(groups == k) for k in g])
        aucs.append(roc_auc_score(labels[idx], scores[idx]))
    expected = (np.quantile(aucs, 0.025), np.quantile(aucs, 0.975))
    got = bootstrap_auc(labels, scores, groups, n_boot=40, seed=5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_roc_auc_equals_sklearn_with_ties_and_one_class():
    from sklearn.metrics import roc_auc_score

    from lensarray.statistics import roc_auc

    rng = np.random.default_rng(11)
    for n, decimals in ((7, 0), (300, 1), (5000, 3), (4000, 12)):
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(size=n) + 0.3 * labels, decimals)  # coarse rounding: many ties
        assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-14)
    assert roc_auc([1, 1, 0, 0], [0.2, 0.2, 0.2, 0.2]) == 0.5  # all tied
    assert roc_auc([1, 1, 0], [3.0, 2.0, 1.0]) == 1.0
    assert roc_auc([1, 0, 0], [1.0, 2.0, 3.0]) == 0.0
    assert np.isnan(roc_auc([1, 1, 1], [1.0, 2.0, 3.0]))  # one class: undefined


def test_visibility_kernel_equals_the_numpy_reference():
    from _visibility_ref import visibility_proxy as reference

    rng = np.random.default_rng(12)
    n, size = 24, 64
    yy, xx = np.mgrid[0:size, 0:size] - size // 2
    r = np.hypot(yy, xx)
    te = rng.uniform(2, 10, n)
    imgs = 5 * np.exp(-r / 4)[None] + rng.normal(0, 0.1, (n, size, size))
    imgs += (np.abs(r[None] - te[:, None, None]) < 1.5) * (xx[None] > 0) * rng.uniform(0, 1, (n, 1, 1))
    imgs[3, 10:12, 5:9] = np.nan
    imgs[5, 30:34, 30:34] = np.inf
    fwhm = rng.uniform(3, 7, n)
    te[7], fwhm[8] = np.nan, np.nan
    got, ref = visibility_proxy(imgs, te, fwhm), reference(imgs, te, fwhm)
    assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.isnan(got[7])
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_measured_core_flux_fraction_honours_core_centre_lens():
    """A point arc at the lens centre, 8 px from the stamp origin: all of its flux is in the core
    around the lens (core_centre = "lens"), none in the core around the stamp origin."""
    from lensarray.diagnostics import measure_spec
    from lensarray.diagnostics.features import cube_config

    ds = toy_cube(8, seed=13, kind="null").load()
    ps = float(ds.attrs["pixel_scale"])
    size = ds.sizes["x"]
    arc = np.zeros(ds["arc"].shape, np.float32)
    arc[:, :, size // 2, size // 2 + 8] = 1.0  # x offset +8 px, as lens_x = 8 px below
    arc[1, :, size // 2 - 3, size // 2 + 8] = 1.0  # a second source 3 px below the lens: inside r < 5 too
    arc[2, :, size // 2, size // 2 + 2] = 1.0  # 6 px from the lens, 2 px from the origin: outside / inside
    ds["arc"] = (ds["arc"].dims, arc)
    ds["lens_x"] = ("pair", np.full(8, 8 * ps, np.float32))
    ds["lens_y"] = ("pair", np.zeros(8, np.float32))
    cfg = cube_config(ds)
    got = {}
    for centre in ("lens", "stamp"):
        c = cfg.replace(**{"diagnostics.core_centre": centre, "diagnostics.core_radius": 5.0})
        t = pair_table(ds, spec=measure_spec(ds, c), progress=False, stored=())
        got[centre] = t["core_flux_frac_measured"].values
    expect_lens = np.ones((8, 3))
    expect_lens[2] = 0.5
    np.testing.assert_array_equal(got["lens"], expect_lens)
    expect_stamp = np.zeros((8, 3))
    expect_stamp[2] = 0.5
    np.testing.assert_array_equal(got["stamp"], expect_stamp)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's all-NaN slices in the reference
@pytest.mark.parametrize("matched", [False, True])
def test_pixel_pass_table_equals_numpy_definitions_with_planted_bad_pixels(matched):
    """The table kernel against the definitions written as numpy reductions, on stamps with NaN /
    inf pixels, no-data pixels carrying flux, non-finite and negative invvar, a stamp without data,
    an all-NaN band and mask bits, for the plain and the core-matched control."""
    from lensarray.diagnostics.features import CENTRAL_RADIUS_PX, N_MASKBITS, MeasureSpec, _table_batch
    from lensarray.geometry import core_pixels, radius_grid

    rng = np.random.default_rng(21)
    n, nb, size = 24, 3, 32
    host = rng.normal(0.0, 1.0, (n, nb, size, size)).astype(np.float32)
    arc = np.abs(rng.normal(0.0, 0.5, (n, nb, size, size))).astype(np.float32)
    inv = np.round(rng.uniform(0.5, 2.0, (n, nb, size, size)), 1).astype(np.float32)  # many ties
    for arr, val, frac in (
        (host, np.nan, 0.01),
        (arc, np.inf, 0.005),
        (host, -np.inf, 0.005),
        (arc, np.nan, 0.01),
        (inv, 0.0, 0.02),
        (inv, np.nan, 0.01),
        (inv, np.inf, 0.01),
        (inv, -1.0, 0.01),
    ):
        arr[rng.random(arr.shape) < frac] = val
    inv[3] = 0.0  # a stamp without data
    host[4, 1] = np.nan  # an all-NaN band
    maskbits = np.where(rng.random((n, size, size)) < 0.05, rng.integers(1, 2**N_MASKBITS, (n, size, size)), 0)
    w_core = np.clip(1 - radius_grid(size) / 6, 0, 1).astype(np.float32) if matched else None
    spec = MeasureSpec(
        core_radius=5.0, snr_band=1, ref_band=1, pixel_scale=0.262, box=10, side=11, edge_side=17, w_core=w_core
    )
    with np.errstate(all="ignore"):
        got = _table_batch(
            host, arc, inv, maskbits.astype(np.int32), np.ones(n), np.ones((n, nb)), np.zeros(n, bool), spec
        )
        lens = host.astype(np.float64) + arc
        ctrl = (host + arc * w_core).astype(np.float64) if matched else host.astype(np.float64)
        flat = lambda a: a.reshape(*a.shape[:-2], -1)  # noqa: E731
        iv = flat(inv.astype(np.float64))
        core, central = core_pixels(size, 5.0).ravel(), core_pixels(size, CENTRAL_RADIUS_PX).ravel()
        nodata = iv <= 0
        good = np.where((iv > 0) & np.isfinite(iv), iv, np.nan)
        np.testing.assert_allclose(got["invvar_sum"], iv.sum(-1), rtol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(got["invvar_median"], np.nanmedian(good, -1))
        np.testing.assert_array_equal(got["invvar_zero_frac"], nodata.mean(-1))
        bits = (maskbits.reshape(n, -1)[:, None, :] >> np.arange(N_MASKBITS)[None, :, None]) & 1
        np.testing.assert_array_equal(got["maskbit_frac"], bits.mean(-1))
        np.testing.assert_array_equal(got["bad_pixel_frac"], (nodata.any(1) | (maskbits.reshape(n, -1) != 0)).mean(-1))
        for r, st in enumerate((flat(lens), flat(ctrl))):
            np.testing.assert_array_equal(got["nan_count"][:, r], np.isnan(st).sum((1, 2)))
            np.testing.assert_array_equal(got["inf_count"][:, r], np.isinf(st).sum((1, 2)))
            np.testing.assert_array_equal(got["nodata_flux_count"][:, r], (nodata & (st != 0)).sum((1, 2)))
            np.testing.assert_allclose(
                got["flux_outside_core"][:, r], np.nansum(st[..., ~core], -1), rtol=1e-12, equal_nan=True
            )
            np.testing.assert_allclose(
                got["core_mean"][:, r], np.nanmean(st[..., core], -1), rtol=1e-12, equal_nan=True
            )
            ref = st[:, 1][:, central]
            np.testing.assert_array_equal(
                got["central_brightness"][:, r], np.nanmedian(np.where(np.isfinite(ref), ref, np.nan), -1)
            )
    assert got["nan_count"].sum() > 0 and got["inf_count"].sum() > 0 and got["nodata_flux_count"].sum() > 0
