"""Property-based tests (hypothesis) of the rules everything else leans on: chunk independence of
rendering, shard bounds, split assignment, and the bin-edge rules. Example counts are small: these
run in CI on 2 cores."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lensarray import pipeline
from lensarray.cube import VARIABLES
from lensarray.diagnostics.core_flux import binned_quantiles
from lensarray.diagnostics.snr import arc_snr_distribution
from lensarray.rng import RNG_BLOCK, Stream, pair_uniforms
from lensarray.sampling import sample_target_snr
from lensarray.splits import SplitPlan, plan_splits, plan_splits_over_pairs, region_of
from lensarray.store import shard_bounds

# examples drawn from a fixed seed: the suite is a gate, and a gate must not pass or fail by the
# draw of the day (new examples come from changing a strategy, or from `--hypothesis-seed`)
settings.register_profile("lensarray", derandomize=True)
settings.load_profile("lensarray")

FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

N_RENDER = 24


@pytest.fixture(scope="module")
def render_setup(make_cfg):
    cfg = make_cfg(N_RENDER, shard=8, chunk=4, size=16, **{"negatives.fraction": 0.3})
    return cfg, pipeline.plan_build(cfg)


@FEW
@given(ids=st.lists(st.integers(0, N_RENDER - 1), min_size=1, max_size=6, unique=True), cut=st.integers(0, 6))
def test_rendering_a_pair_set_equals_rendering_its_parts(render_setup, ids, cut):
    cfg, plan = render_setup
    ids = np.asarray(ids, dtype=np.int64)
    cut = min(cut, ids.size)
    whole = pipeline.render_pairs(ids, cfg, plan)
    parts = [pipeline.render_pairs(part, cfg, plan) for part in (ids[:cut], ids[cut:]) if part.size]
    single = pipeline.render_pairs(ids[-1:], cfg, plan)
    for name in VARIABLES:
        joined = np.concatenate([p[name] for p in parts])
        np.testing.assert_array_equal(whole[name], joined, err_msg=name)
        np.testing.assert_array_equal(whole[name][-1:], single[name], err_msg=name)


pair_ids = st.lists(st.integers(0, 3 * RNG_BLOCK + 7) | st.integers(0, 2**40), min_size=1, max_size=24)


@settings(max_examples=40, deadline=None)
@given(ids=pair_ids, k=st.integers(1, 6), wider=st.integers(0, 5), attempt=st.integers(0, 2))
def test_a_pairs_uniforms_depend_on_the_pair_alone(ids, k, wider, attempt):
    ids = np.asarray(ids, dtype=np.int64)
    got = pair_uniforms(11, ids, Stream.LENS, k, attempt=attempt)
    assert got.shape == (ids.size, k) and (got >= 0).all() and (got < 1).all()
    # each row is the pair drawn alone, and the first k columns of a wider draw of it
    alone = np.concatenate(
        [pair_uniforms(11, ids[i : i + 1], Stream.LENS, k + wider, attempt=attempt)[:, :k] for i in range(ids.size)]
    )
    np.testing.assert_array_equal(got, alone)
    # ... and its row in a run of consecutive ids around it (the fast path of whole chunks)
    lo = max(int(ids.min()) - 5, 0)
    if int(ids.max()) - lo < 4 * RNG_BLOCK:
        run = pair_uniforms(11, np.arange(lo, int(ids.max()) + 6), Stream.LENS, k, attempt=attempt)
        np.testing.assert_array_equal(got, run[ids - lo])
    # another stream, attempt or seed gives other numbers
    for other in (
        pair_uniforms(11, ids, Stream.SOURCE, k, attempt=attempt),
        pair_uniforms(11, ids, Stream.LENS, k, attempt=attempt + 1),
        pair_uniforms(12, ids, Stream.LENS, k, attempt=attempt),
    ):
        assert not (other == got).any()


@FEW
@given(block=st.integers(1, 700))
def test_split_planning_over_pairs_does_not_depend_on_its_block(make_cfg, block):
    from lensarray.hosts.synthetic import synthetic_host_properties

    cfg = make_cfg(700)
    props = lambda ids: synthetic_host_properties(ids, cfg)  # noqa: E731
    assert (
        plan_splits_over_pairs(cfg, props, block=block).to_json()
        == plan_splits_over_pairs(cfg, props, block=700).to_json()
    )


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 100_000), shard=st.integers(1, 5_000))
def test_shard_bounds_cover_every_pair_exactly_once(n, shard):
    bounds = shard_bounds(n, shard)
    assert len(bounds) == -(-n // shard)
    stops = [0] + [b for _, b in bounds]
    assert [a for a, _ in bounds] == stops[:-1]  # contiguous, starting at 0
    assert stops[-1] == n
    sizes = [b - a for a, b in bounds]
    assert all(s == shard for s in sizes[:-1]) and all(0 < s <= shard for s in sizes)


positions = st.integers(0, 2**32 - 1).map(lambda s: np.random.default_rng(s))


@FEW
@given(rng=positions, nside=st.sampled_from([2, 4, 8]), cut=st.integers(1, 299))
def test_split_assignment_is_deterministic_chunk_independent_and_region_disjoint(make_cfg, rng, nside, cut):
    ra = rng.uniform(0, 360, 300)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 300)))
    cfg = make_cfg(300, **{"splits.nside": nside})
    plan = plan_splits({"ra": ra, "dec": dec, "brickname": None}, cfg)
    reg, split = plan.assign(ra, dec)
    reg2, split2 = SplitPlan.from_json(plan.to_json()).assign(ra, dec)  # as a shard task sees it
    np.testing.assert_array_equal(split, split2)
    np.testing.assert_array_equal(reg, reg2)
    parts = [plan.assign(ra[s], dec[s]) for s in (slice(0, cut), slice(cut, None))]
    np.testing.assert_array_equal(split, np.concatenate([p[1] for p in parts]))
    np.testing.assert_array_equal(reg, region_of(ra, dec, None, scheme="healpix", nside=nside))
    # region-disjoint: every region in exactly one split; every planned pair has a split
    for r in np.unique(reg):
        assert np.unique(split[reg == r]).size == 1
    assert (split >= 0).all()
    assert (split == 2).any()  # min_test_regions regions are held out


@FEW
@given(rng=positions)
def test_regions_unseen_at_planning_get_no_split(make_cfg, rng):
    ra = rng.uniform(0, 180, 200)
    dec = rng.uniform(-30, 30, 200)
    plan = plan_splits({"ra": ra, "dec": dec, "brickname": None}, make_cfg(200))
    far_ra = rng.uniform(200, 340, 50)  # no planned pair in this half of the sky
    _, split = plan.assign(far_ra, rng.uniform(-30, 30, 50))
    assert (split == -1).all()


edges_strategy = st.lists(st.floats(0, 100, allow_nan=False), min_size=2, max_size=6, unique=True).map(sorted)
# S/N bin edges as a configuration holds them (0.001 apart at least): a bin only a few ulps wide
# (hypothesis found [0, 5e-324, 1]) cannot hold its fraction of a float inverse CDF
snr_edges_strategy = (
    st.lists(st.integers(0, 100_000), min_size=2, max_size=6, unique=True)
    .map(sorted)
    .map(lambda v: [x / 1000 for x in v])
)


@settings(max_examples=60, deadline=None)
@given(edges=edges_strategy, rng=positions)
def test_binned_quantiles_count_each_value_once_last_bin_closed(edges, rng):
    # values on the edges themselves are the cases a bin rule decides
    by = np.concatenate([rng.uniform(-10, 110, 40), np.asarray(edges), np.asarray(edges)])
    values = rng.normal(size=by.size)
    rows = binned_quantiles(values, by, edges)
    inside = (by >= edges[0]) & (by <= edges[-1])
    assert sum(r["count"] for r in rows) == int(inside.sum())
    assert rows[-1]["count"] == int(((by >= edges[-2]) & (by <= edges[-1])).sum())


@settings(max_examples=60, deadline=None)
@given(edges=edges_strategy, rng=positions)
def test_arc_snr_distribution_accounts_for_every_value(edges, rng):
    v = np.concatenate([rng.uniform(-10, 110, 40), np.asarray(edges)])
    fr = np.full(len(edges) - 1, 1.0 / (len(edges) - 1))
    out = arc_snr_distribution(v, edges, fr)
    assert sum(b["count"] for b in out["bins"]) + out["below"] + out["above"] == v.size
    assert out["bins"][-1]["count"] == int(((v >= edges[-2]) & (v <= edges[-1])).sum())


@settings(max_examples=60, deadline=None)
@given(edges=snr_edges_strategy, weights=st.lists(st.floats(0.01, 1.0), min_size=5, max_size=5))
def test_target_snr_is_an_inverse_cdf_with_the_configured_bin_fractions(edges, weights):
    k = len(edges) - 1
    fr = np.asarray(weights[:k]) / np.sum(weights[:k])
    n = 4000
    u = (np.arange(n) + 0.5) / n  # an even grid: the fraction per bin is exact up to 1/n
    snr = sample_target_snr(u, edges, fr)
    assert (np.diff(snr) >= 0).all()  # monotone in u, so a quantile of u is a quantile of S/N
    assert snr.min() >= edges[0] and snr.max() <= edges[-1]
    counts = np.histogram(snr, bins=edges)[0]
    np.testing.assert_allclose(counts / n, fr, atol=2.0 / n)
