"""Region-disjoint splits: planning, chunk-independent assignment, integrity checks."""

import numpy as np
import pytest

from lensarray.splits import (
    RegionTally,
    SplitError,
    SplitPlan,
    check_split_integrity,
    plan_splits,
    plan_splits_over_pairs,
    region_of,
)


def _table(n=5000, seed=1, dec_range=(-60, 30)):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(*np.sin(np.radians(dec_range)), n)))
    psf = rng.uniform(1.0, 1.8, n) + 0.3 * (dec > 0)  # a sky-dependent systematic
    return {
        "ra": ra,
        "dec": dec,
        "brickname": np.array(["0000p000"] * n),
        "psf_fwhm_r": psf,
        "theta_e": rng.uniform(0.5, 3, n),
        "host_id": np.arange(n),
    }


@pytest.fixture
def cfg_of(make_cfg):
    """The shared configuration at the size of :func:`_table`, with dotted overrides."""
    return lambda **over: make_cfg(5000, **over)


@pytest.mark.parametrize("scheme", ["healpix", "bricks"])
def test_plan_is_region_disjoint_with_requested_fractions(scheme, cfg_of):
    t = _table()
    if scheme == "bricks":
        t.pop("brickname")
    plan = plan_splits(t, cfg_of(**{"splits.scheme": scheme}))
    region, split = plan.assign(t["ra"], t["dec"], t.get("brickname") if scheme == "healpix" else None)
    assert (split >= 0).all()
    for s, want in enumerate((0.8, 0.1, 0.1)):
        assert abs((split == s).mean() - want) < 0.03
    # no region in two splits
    for r in np.unique(region):
        assert np.unique(split[region == r]).size == 1
    assert np.unique(region[split == 2]).size >= 2
    res = check_split_integrity({"split": split, "region": region, "host_id": t["host_id"]}, cfg_of())
    assert res["passed"], res["problems"]


def test_assignment_is_chunk_independent_and_round_trips_json(cfg_of):
    t = _table()
    plan = plan_splits(t, cfg_of())
    whole = plan.assign(t["ra"], t["dec"])
    parts = [plan.assign(t["ra"][a : a + 333], t["dec"][a : a + 333]) for a in range(0, 5000, 333)]
    np.testing.assert_array_equal(whole[1], np.concatenate([p[1] for p in parts]))
    again = SplitPlan.from_json(plan.to_json()).assign(t["ra"], t["dec"])
    np.testing.assert_array_equal(whole[1], again[1])


def test_stratification_balances_a_sky_dependent_proxy(cfg_of):
    t = _table()
    plan = plan_splits(t, cfg_of())
    _, split = plan.assign(t["ra"], t["dec"])
    means = [t["psf_fwhm_r"][split == s].mean() for s in range(3)]
    assert max(means) - min(means) < 0.06  # the proxy spans 1.0-2.1": splits match to a few %


def _few_regions(k, n=600):
    """Pairs on ``k`` HEALPix (nside 8) regions: ``k`` well separated sky positions."""
    from astropy_healpix import HEALPix

    rng = np.random.default_rng(3)
    lon, lat = HEALPix(nside=8, order="nested").healpix_to_lonlat([100, 300, 500][:k])  # pixel centres
    centres = list(zip(lon.deg, lat.deg, strict=True))
    which = rng.integers(0, k, n)
    ra = np.array([centres[w][0] for w in which]) + rng.uniform(-0.1, 0.1, n)
    dec = np.array([centres[w][1] for w in which]) + rng.uniform(-0.1, 0.1, n)
    return {"ra": ra, "dec": dec, "brickname": np.array([""] * n), "host_id": which}


@pytest.mark.parametrize("k, splits_present", [(1, {0}), (2, {0, 2}), (3, {0, 1, 2})])
def test_fewer_regions_than_asked_warn_and_stay_region_disjoint(k, splits_present, caplog, cfg_of):
    t = _few_regions(k)
    with caplog.at_level("WARNING", logger="lensarray.splits"):
        plan = plan_splits(t, cfg_of(**{"run.n_pairs": t["ra"].size}))
    assert any(f"only {k} sky region" in r.getMessage() for r in caplog.records)
    region, split = plan.assign(t["ra"], t["dec"])
    assert np.unique(region).size == k
    assert set(np.unique(split).tolist()) == splits_present  # the best the regions allow
    for r in np.unique(region):
        assert np.unique(split[region == r]).size == 1


def test_enough_regions_do_not_warn(caplog, cfg_of):
    with caplog.at_level("WARNING", logger="lensarray.splits"):
        plan_splits(_table(), cfg_of())
    assert not caplog.records


def test_scheme_none_puts_every_pair_in_train(cfg_of):
    t = _few_regions(3)
    plan = plan_splits(t, cfg_of(**{"splits.scheme": "none"}))
    region, split = SplitPlan.from_json(plan.to_json()).assign(t["ra"], t["dec"])
    assert (split == 0).all() and (region == 0).all()


def test_unknown_scheme_is_refused():
    with pytest.raises(SplitError, match="allowed healpix, bricks or none"):
        region_of(np.zeros(1), np.zeros(1), None, scheme="voronoi", nside=8)


def test_integrity_check_catches_leaks():
    split = np.array([0, 0, 1, 2, 2])
    region = np.array([1, 1, 1, 3, 4])  # region 1 in train and val
    host = np.array([10, 11, 12, 13, 10])  # host 10 in train and test
    res = check_split_integrity({"split": split, "region": region, "host_id": host}, tolerance=1.0)
    assert not res["passed"]
    text = " ".join(res["problems"])
    assert "region" in text and "host_id" in text


def test_region_of_brick_scheme_uses_brick_names():
    r = region_of(
        np.array([0.0, 0.0]), np.array([0.0, 0.0]), np.array(["0001m040", "3590p300"]), scheme="bricks", nside=8
    )
    assert r[0] != r[1]


def test_region_of_brick_names_is_vectorised_exactly_and_refuses_foreign_names():
    from lensarray.hosts.bricks import brickname_of

    rng = np.random.default_rng(5)
    names = brickname_of(rng.uniform(0, 360, 3000), np.degrees(np.arcsin(rng.uniform(-1, 1, 3000))))
    got = region_of(np.zeros(names.size), np.zeros(names.size), names, scheme="bricks", nside=8)
    # the per-name reading it replaces: RRRR (0.1 deg) s DDD (0.1 deg)
    ra_b = np.array([int(s[:4]) / 10.0 for s in names])
    dec_b = np.array([(1 if s[4] == "p" else -1) * int(s[5:8]) / 10.0 for s in names])
    want = (np.floor((dec_b + 90.0) / 0.25).astype(np.int64) // 8) * 36 + np.floor(ra_b / 10.0).astype(np.int64)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(SplitError, match="brickname = 'x001m040'.*allowed DR10"):
        region_of(np.zeros(2), np.zeros(2), np.array(["0001m040", "x001m040"]), scheme="bricks", nside=8)


@pytest.mark.parametrize("scheme", ["healpix", "bricks"])
def test_a_plan_from_blocks_equals_the_plan_from_the_whole_table(cfg_of, scheme):
    t = _table(n=3000)
    t.pop("brickname")
    cfg = cfg_of(**{"splits.scheme": scheme, "run.n_pairs": 3000})
    whole = plan_splits(t, cfg)
    tally = RegionTally(scheme=scheme, nside=8)
    for a in range(0, 3000, 701):  # blocks that do not divide the table
        tally.add({k: v[a : a + 701] for k, v in t.items()})
    assert plan_splits(tally, cfg).to_json() == whole.to_json()
    ref = RegionTally.of_table(t, cfg)
    np.testing.assert_array_equal(tally.counts, ref.counts)
    np.testing.assert_allclose(tally.standardized_sums(), ref.standardized_sums(), rtol=1e-9, atol=1e-9)


def test_standardized_sums_equal_the_per_pair_standardisation(cfg_of):
    t = _table(n=2000)
    t["theta_e"][::7] = np.nan  # a missing proxy counts as the mean
    tally = RegionTally.of_table(t, cfg_of())
    reg = region_of(t["ra"], t["dec"], None, scheme="healpix", nside=8)
    x = np.stack([t["psf_fwhm_r"], t["theta_e"]], axis=1)
    z = np.nan_to_num((x - np.nanmean(x, 0)) / np.nanstd(x, 0))
    want = np.stack([np.bincount(np.searchsorted(tally.regions, reg), weights=z[:, j]) for j in range(2)], axis=1)
    np.testing.assert_allclose(tally.standardized_sums(), want, atol=1e-9)


def test_planning_over_pairs_reports_progress_only_when_asked(make_cfg, capsys, caplog):
    from lensarray.hosts.synthetic import synthetic_host_properties

    cfg = make_cfg(3000)
    props = lambda ids: synthetic_host_properties(ids, cfg)  # noqa: E731
    with caplog.at_level("DEBUG", logger="lensarray.splits"):
        quiet = plan_splits_over_pairs(cfg, props, block=1000)
    # no bar (a log handler another test left on stderr may print the log line: not a bar)
    assert "/3.00k" not in capsys.readouterr().err
    assert any("split planning: 3000 pairs" in r.getMessage() for r in caplog.records)
    loud = plan_splits_over_pairs(cfg, props, block=777, progress=True)
    err = capsys.readouterr().err
    assert "split planning" in err and "3.00k/3.00k" in err  # the bar on stderr, run to the end
    assert loud.to_json() == quiet.to_json()  # the block size changes nothing


@pytest.mark.parametrize("scheme", ["healpix", "bricks"])
def test_the_build_plans_from_the_planner_fields_what_it_plans_from_all_host_facts(make_cfg, scheme):
    from lensarray import pipeline
    from lensarray.hosts.synthetic import synthetic_host_properties
    from lensarray.splits import planning_fields

    cfg = make_cfg(9000).replace(**{"splits.scheme": scheme})
    assert ("brickname" in planning_fields(cfg)) == (scheme == "bricks")
    every_fact = plan_splits_over_pairs(cfg, lambda ids: synthetic_host_properties(ids, cfg), block=4000)
    assert pipeline.plan_build(cfg).split_plan_json == every_fact.to_json()


def _reference_tally_add(tally: dict, table: dict, scheme: str, nside: int) -> None:
    """RegionTally.add before block tallies and merging (one bincount per proxy and moment)."""
    from lensarray.splits import PROXIES, _proxy_columns

    reg = region_of(table["ra"], table["dec"], table.get("brickname"), scheme=scheme, nside=nside)
    names = tuple(p for p in PROXIES if p in table)
    merged = np.union1d(tally["regions"], np.unique(reg))
    old, new = np.searchsorted(merged, tally["regions"]), np.searchsorted(merged, reg)
    n_reg, n_prox = merged.size, len(names)

    def grow(a):
        out = np.zeros((n_reg, *a.shape[1:]), dtype=a.dtype)
        out[old] = a
        return out

    tally["counts"] = grow(tally["counts"]) + np.bincount(new, minlength=n_reg)
    mats = [grow(tally[k].reshape(tally["regions"].size, n_prox)) for k in ("n_finite", "sum1", "sum2")]
    x = _proxy_columns(table, names)
    ok = np.isfinite(x)
    x = np.where(ok, x, 0.0)
    for m, v in zip(mats, (ok.astype(np.float64), x, x * x), strict=True):
        for j in range(n_prox):
            m[:, j] += np.bincount(new, weights=v[:, j], minlength=n_reg)
    tally["n_finite"], tally["sum1"], tally["sum2"] = mats
    tally["regions"] = merged


# nside 8 and bricks: region ids binned directly; nside 256: past the direct bins (unique ids)
@pytest.mark.parametrize(("scheme", "nside"), [("healpix", 8), ("bricks", 8), ("healpix", 256)])
def test_block_tallies_merged_in_order_equal_the_per_proxy_accumulation_exactly(make_cfg, scheme, nside):
    from lensarray.hosts.synthetic import synthetic_host_properties
    from lensarray.splits import planning_table

    cfg = make_cfg(12_000).replace(**{"splits.scheme": scheme, "splits.nside": nside, "brightness.mode": "snr"})
    ref = {"regions": np.zeros(0, np.int64), "counts": np.zeros(0, np.int64)}
    ref.update(n_finite=np.zeros((0, 0)), sum1=np.zeros((0, 0)), sum2=np.zeros((0, 0)))
    got = RegionTally(scheme=scheme, nside=nside)
    for a in range(0, 12_000, 2900):
        ids = np.arange(a, min(a + 2900, 12_000))
        table = planning_table(ids, synthetic_host_properties(ids, cfg), cfg)
        table["theta_e"][::11] = np.nan  # missing proxies count as the mean
        _reference_tally_add(ref, table, scheme, nside)
        got.add(table)
    assert got.proxies and "target_snr" in got.proxies
    for k in ("regions", "counts", "n_finite", "sum1", "sum2"):
        assert got.__dict__[k].dtype == ref[k].dtype and np.array_equal(got.__dict__[k], ref[k]), k


@pytest.mark.parametrize("scheme", ["healpix", "bricks"])
def test_planning_threads_change_nothing(make_cfg, scheme):
    from lensarray.hosts.synthetic import synthetic_host_properties

    cfg = make_cfg(20_000).replace(**{"splits.scheme": scheme})
    props = lambda ids: synthetic_host_properties(ids, cfg)  # noqa: E731
    one = plan_splits_over_pairs(cfg, props, block=1500, threads=1).to_json()
    assert plan_splits_over_pairs(cfg, props, block=1500, threads=3).to_json() == one
    assert plan_splits_over_pairs(cfg, props, block=4096).to_json() == one  # the default threads


def test_planning_table_reads_the_planning_band_of_all_bands_or_alone(make_cfg):
    from lensarray.hosts.synthetic import synthetic_host_properties
    from lensarray.splits import planning_band, planning_table

    cfg = make_cfg(3000).replace(**{"run.bands": ["z", "r", "g"]})
    assert planning_band(cfg) == "r" and planning_band(cfg.replace(**{"run.bands": ["z", "g"]})) == "z"
    ids = np.arange(3000)
    every = planning_table(ids, synthetic_host_properties(ids, cfg), cfg)
    alone = planning_table(ids, synthetic_host_properties(ids, cfg, bands=["r"]), cfg)
    assert every.keys() == alone.keys()
    for k in every:
        assert np.array_equal(every[k], alone[k]), k
    two = synthetic_host_properties(ids, cfg, bands=["r", "g"])
    with pytest.raises(SplitError, match=r"psf_fwhm \(2,\), psfdepth \(2,\) per pair: allowed one column per band"):
        planning_table(ids, two, cfg)
