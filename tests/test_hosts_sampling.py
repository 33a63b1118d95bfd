"""Synthetic hosts, priors, S/N calibration, core masks, negatives: determinism, calibration
against the real data in ../shared/data, exact answers."""

import numpy as np
import pytest

from lensarray.derived import arc_statistics
from lensarray.hosts.bricks import brickname_of
from lensarray.hosts.synthetic import CALIBRATION, synthetic_host_properties, synthetic_hosts
from lensarray.masking import apply_core_mask, core_mask_weights, parse_core_mask
from lensarray.negatives import draw_negative_kinds, render_negative_features
from lensarray.physics.render import render_unit_arcs
from lensarray.sampling import calibrate_flux, sample_balance_params, sample_params
from lensarray.testing import shared_data


@pytest.fixture(scope="module")
def cfg(make_cfg):
    """The shared configuration at the default 64-px stamp (the pixel tests below index it)."""
    return make_cfg(4000, size=64, shard=256, chunk=16)


def test_hosts_are_chunk_independent_and_consistent(cfg):
    from lensarray.hosts.synthetic import _host_images

    h = synthetic_hosts(np.arange(40), cfg)
    model = _host_images(synthetic_host_properties(np.arange(40), cfg), cfg)
    part = synthetic_hosts(np.arange(25, 33), cfg)
    for k in ("host", "invvar", "maskbits", "ra", "psf_fwhm", "brickname"):
        np.testing.assert_array_equal(part[k], h[k][25:33], err_msg=k)
    # noise drawn from invvar: normalised residual of the outer sky ~ N(0, 1)
    yy, xx = np.mgrid[0:64, 0:64] - 32
    outer = np.hypot(yy, xx) > 26
    res = []
    for i in range(40):
        good = outer & (h["invvar"][i, 1] > 0)
        res.append((h["host"][i, 1] - model[i, 1])[good] * np.sqrt(h["invvar"][i, 1][good]))
    res = np.concatenate(res)
    assert abs(np.std(res) - 1) < 0.03 and abs(np.median(res)) < 0.03
    assert (h["host"][h["invvar"] == 0] >= 0).all()


def test_brick_names_match_real_dr10():
    ra = [0.10618843, 0.06109889, 0.26156697, 0.25441706, 359.85571289, 0.69431657]
    dec = [-3.95577168, -5.95079136, -37.32427216, -0.55785072, -3.04931903, 27.08937073]
    assert brickname_of(ra, dec).tolist() == ["0001m040", "0001m060", "0001m372", "0003m005", "3598m030", "0006p270"]
    # an even number of columns per row (1440 on the equator, 1286 at Dec 27); poles are one brick
    assert brickname_of([0.1, 359.9], [0.0, 0.0]).tolist() == ["0001p000", "3598p000"]
    assert brickname_of([10.0, 300.0], [-89.99, 89.99]).tolist() == ["1800m900", "1800p900"]


def test_host_property_distributions_follow_the_calibration(cfg):
    p = synthetic_host_properties(np.arange(4000), cfg)
    r = cfg.run.bands.index("r")
    q = np.percentile(p["psf_fwhm"][:, r], [16, 50, 84])
    np.testing.assert_allclose(q, [1.20, 1.37, 1.59], atol=0.05)  # DR10 brick percentiles
    assert cfg.hosts.r_mag_min <= p["host_mag"][:, r].min() and p["host_mag"][:, r].max() <= cfg.hosts.r_mag_max
    des = p["dec"] < CALIBRATION["des_dec_max"]
    assert np.median(p["psfdepth"][des, r]) == pytest.approx(25.1, abs=0.1)
    assert np.median(p["psfdepth"][~des, r]) == pytest.approx(24.2, abs=0.1)
    assert (p["dec"] >= -65).all() and (p["dec"] <= 32).all()


@pytest.mark.skipif(shared_data() is None, reason="../shared/data not present")
def test_calibration_numbers_rederived_from_shared_data():
    import csv

    rows = list(csv.DictReader(open(shared_data() / "observing_conditions" / "dr10_bricks_psf_depth_r.csv")))
    key = next(k for k in rows[0] if "psf" in k.lower())
    psf = np.array([float(r[key]) for r in rows if r[key] not in ("", "nan")])
    psf = psf[np.isfinite(psf)]
    assert np.median(psf) == pytest.approx(CALIBRATION["psf_r"][0], abs=0.05)
    sig = (np.log(np.percentile(psf, 84)) - np.log(np.percentile(psf, 16))) / 2
    assert sig == pytest.approx(CALIBRATION["psf_r"][1], abs=0.04)


@pytest.mark.skipif(shared_data() is None, reason="../shared/data not present")
def test_synthetic_vs_real_dr10_brightness_and_noise(cfg):
    real = []
    for f in sorted((shared_data() / "cutouts" / "dr10_npz").glob("*.npz")):
        real.append(np.moveaxis(np.load(f)["cutout"], -1, 0)[:, 18:82, 18:82])
    real = np.stack(real)
    syn = synthetic_hosts(np.arange(300), cfg)["host"]
    yy, xx = np.mgrid[0:64, 0:64] - 32
    r = np.hypot(yy, xx)

    def central(st):
        return np.median(st[:, 1][:, r < 8], axis=1)

    def noise(st):
        v = st[:, 1][:, r > 26]
        return 1.4826 * np.median(np.abs(v - np.median(v, axis=1, keepdims=True)), axis=1)

    b_ratio = np.median(central(syn)) / np.median(central(real))
    n_ratio = np.median(noise(syn)) / np.median(noise(real))
    print(f"synthetic/real DR10: central r brightness ratio {b_ratio:.2f}, sky noise ratio {n_ratio:.2f}")
    assert 0.33 < b_ratio < 3.0
    assert 0.5 < n_ratio < 2.0


@pytest.mark.skipif(shared_data() is None, reason="../shared/data not present")
def test_synthetic_sky_noise_vs_real_des_coadd(cfg):
    """DES-region synthetic r sky noise vs a real DES r coadd (SCI*1e-3 nmgy, WGT*1e6 invvar).

    The coadd's corner MAD must agree with its own WGT (checks our unit reading), and the
    synthetic noise must be within a factor 2 of it: the synthetic depth is the DES median
    (r 25.1) while this single field may be shallower or deeper by up to ~0.75 mag.
    """
    from astropy.io import fits

    with fits.open(shared_data() / "cutouts" / "des_coadd_weight" / "DES_r.fits") as h:
        sci, wgt = h["SCI"].data * 1e-3, h["WGT"].data * 1e6
    corners = np.concatenate([c.ravel() for c in (sci[:40, :40], sci[:40, -40:], sci[-40:, :40], sci[-40:, -40:])])
    real_mad = 1.4826 * np.median(np.abs(corners - np.median(corners)))
    real_wgt = 1 / np.sqrt(np.median(wgt[wgt > 0]))
    assert real_mad == pytest.approx(real_wgt, rel=0.15)
    ids = np.arange(1200)
    des = ids[synthetic_host_properties(ids, cfg)["dec"] < CALIBRATION["des_dec_max"]][:120]
    h = synthetic_hosts(des, cfg)
    r = np.hypot(*(np.mgrid[0:64, 0:64] - 32))
    v = h["host"][:, 1][:, r > 26]
    syn = np.median(1.4826 * np.median(np.abs(v - np.median(v, axis=1, keepdims=True)), axis=1))
    print(f"synthetic(DES region)/real DES coadd r sky noise ratio {syn / real_mad:.2f}")
    assert 0.5 < syn / real_mad < 2.0


def test_priors_chunk_independent_and_within_bounds(cfg):
    props = synthetic_host_properties(np.arange(2000), cfg)
    p = sample_params(np.arange(2000), cfg, props)
    q = sample_params(np.arange(1000, 1010), cfg, {"psf_fwhm": props["psf_fwhm"][1000:1010]})
    for k in ("theta_e", "src_x", "src_reff", "target_snr", "src_color"):
        np.testing.assert_array_equal(q[k], p[k][1000:1010], err_msg=k)
    assert (p["theta_e"] >= 0.5).all() and (p["theta_e"] <= 3.0).all()
    beta = np.hypot(p["src_x"], p["src_y"]) / p["theta_e"]
    assert (beta >= 0.1 - 1e-9).all() and (beta <= 1.0 + 1e-9).all()
    t = p["target_snr"]
    frac = [np.mean((t >= a) & (t < b)) for a, b in ((0.8, 2), (2, 8), (8, 20), (20, 50))]
    np.testing.assert_allclose(frac, [0.40, 0.40, 0.15, 0.05], atol=0.03)
    assert np.hypot(p["lens_e1"], p["lens_e2"]).max() < 0.5
    # the planner's cheap draws are exactly these parameters
    bal = sample_balance_params(np.arange(2000), cfg)
    assert set(bal) == {"theta_e", "target_snr"}
    for k in bal:
        np.testing.assert_array_equal(bal[k], p[k], err_msg=k)


def test_snr_calibration_is_exact(cfg):
    ids = np.arange(12)
    hosts = synthetic_hosts(ids, cfg)
    p = sample_params(ids, cfg, hosts)
    unit, _ = render_unit_arcs(p)
    flux = calibrate_flux(unit, hosts["invvar"], p["target_snr"], 1)
    arcs = unit * flux[:, None, None, None].astype(np.float32)
    st = arc_statistics(arcs, hosts["invvar"], core_radius=5.0, snr_band_index=1)
    np.testing.assert_allclose(st["arc_snr"], p["target_snr"], rtol=1e-5)
    assert np.isnan(calibrate_flux(unit[:1], np.zeros_like(hosts["invvar"][:1]), p["target_snr"][:1], 1))[0]


def test_core_mask_policies():
    w = core_mask_weights(64, "hard", 5.0)
    assert w[32, 32] == 0 and w[32, 37] == 1 and w[32, 36] == 0  # r = 5 kept, r = 4 masked
    t = core_mask_weights(64, "taper", 5.0, 1.0)
    assert t[32, 32] < 0.01 and t[32, 37] == pytest.approx(0.5) and t[32, 60] > 0.999
    prof = t[32, 32:]
    assert (np.diff(prof) >= 0).all()
    assert (core_mask_weights(64, "none") == 1).all()
    arcs = np.ones((2, 3, 64, 64), np.float32)
    st = arc_statistics(apply_core_mask(arcs, "hard", 5.0), arcs, core_radius=5.0, snr_band_index=1)
    assert (st["core_flux_frac"] == 0).all()
    assert parse_core_mask("taper:4:1.5") == ("taper", 4.0, 1.5)
    for bad in ("box", "hard", "hard:-1", "taper:3", "hard:x"):
        with pytest.raises(ValueError, match="allowed"):
            parse_core_mask(bad)


def test_core_flux_fraction_nan_for_null_arcs():
    z = np.zeros((1, 3, 16, 16), np.float32)
    assert np.isnan(arc_statistics(z, z + 1, core_radius=3, snr_band_index=1)["core_flux_frac"]).all()


def test_hard_negatives(make_cfg, cfg):
    neg_cfg = make_cfg(600, size=64, **{"negatives.fraction": 0.3})
    ids = np.arange(600)
    kinds = draw_negative_kinds(ids, neg_cfg)
    assert abs((kinds > 0).mean() - 0.3) < 0.05 and set(np.unique(kinds)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(draw_negative_kinds(ids[100:110], neg_cfg), kinds[100:110])
    sel = ids[:40]
    props = synthetic_host_properties(sel, neg_cfg)
    p = sample_params(sel, neg_cfg, props)
    feats = render_negative_features(sel, kinds[:40], p, neg_cfg)
    neg = kinds[:40] > 0
    tot = feats[neg].sum(axis=(2, 3))
    # unit flux before the PSF; the PSF carries a little of an outer spiral arm off the stamp
    assert (tot <= 1.0 + 1e-4).all() and (tot > 0.95).all()
    assert np.allclose(tot[kinds[:40][neg] != 2], 1.0, atol=0.011)
    assert (feats[~neg] == 0).all()
    # rings are centred on the host: flux centroid near the origin
    ring = np.flatnonzero(kinds[:40] == 1)[0]
    yy, xx = np.mgrid[0:64, 0:64] - 32
    img = feats[ring, 1]
    assert abs((img * xx).sum()) < 1.5 and abs((img * yy).sum()) < 1.5
    assert (draw_negative_kinds(ids, cfg) == 0).all()  # default: off


def test_pair_uniforms_are_uniform_and_uncorrelated_across_pairs_blocks_and_streams():
    from scipy.stats import kstest

    from lensarray.rng import RNG_BLOCK, Stream, pair_uniforms

    ids = np.arange(3 * RNG_BLOCK)  # three random blocks
    u = pair_uniforms(5, ids, Stream.LENS, 4)
    v = pair_uniforms(5, ids, Stream.SOURCE, 4)
    assert kstest(u.ravel(), "uniform").pvalue > 1e-3
    # |r| of independent uniforms ~ N(0, 1/n): 5 sigma at n = 12288 is 0.045
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.045  # neighbouring pairs
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.045  # columns of one pair
    assert abs(np.corrcoef(u[:, 0], v[:, 0])[0, 1]) < 0.045  # two streams
    edge = RNG_BLOCK - 1  # the last pair of a block and the first of the next are not related
    assert not np.isin(u[edge], u[edge + 1]).any()


# -- the fast host facts equal the implementation they replaced (kept here as the reference) ----
def _reference_brickname_of(ra, dec):
    """brickname_of before the code-point tables: per-name strings, zfill, concatenation."""
    ra = np.mod(np.asarray(ra, dtype=np.float64), 360.0)
    dec = np.asarray(dec, dtype=np.float64)
    row = np.clip(((dec + 90.0 + 0.125) / 0.25).astype(np.int64), 0, 720)
    dec_c = np.minimum(row * 0.25 - 90.0, 90.0)
    dec_lo = np.maximum(0.0, np.abs(dec_c) - 0.125)
    ncol = (np.ceil(1440.0 * np.cos(np.radians(dec_lo)) / 2) * 2).astype(np.int64)
    ncol = np.where(np.abs(dec_c) >= 90.0, 1, ncol)
    col = np.minimum((ra / 360.0 * ncol).astype(np.int64), ncol - 1)
    ra_c = np.where(ncol == 1, 180.0, (col + 0.5) * 360.0 / ncol)
    ra_part = np.char.zfill(np.floor(np.round(ra_c * 1e4) / 1e3).astype(np.int64).astype(str), 4)
    sign = np.where(dec_c >= 0, "p", "m")
    dec_part = np.char.zfill(np.floor(np.round(np.abs(dec_c) * 1e4) / 1e3).astype(np.int64).astype(str), 3)
    return np.char.add(np.char.add(ra_part, sign), dec_part).astype("<U8"), (ra_c, dec_c)


def _edge_positions(n: int, seed: int = 3):
    """Random sky plus the edges: RA wrap (0, -0, 360, negative, > 360), the poles, every row
    boundary in Dec, column boundaries of many rows, and values one ulp either side of them."""
    from lensarray.hosts.bricks import brick_centre

    rng = np.random.default_rng(seed)
    ra = [rng.uniform(-400, 760, n), np.array([0.0, -0.0, 360.0, -1e-12, 359.9999999999, 720.0, -360.0, 180.0])]
    dec = [np.degrees(np.arcsin(rng.uniform(-1, 1, n))), np.array([0.0, -0.0, 90.0, -90.0, 89.99, -89.99, 1e-9, -1e-9])]
    rows = np.arange(722) * 0.25 - 90.125  # the row edges
    ra.append(rng.uniform(0, 360, rows.size))
    dec.append(rows)
    _, dec_c = brick_centre(np.zeros(rows.size), np.clip(rows + 0.1, -90, 90))
    for d in dec_c[::7]:  # the column edges of every 7th row
        ncol = int(np.ceil(1440.0 * np.cos(np.radians(max(0.0, abs(d) - 0.125))) / 2) * 2) if abs(d) < 90 else 1
        ra.append(np.arange(ncol + 1) * 360.0 / ncol)
        dec.append(np.full(ncol + 1, d))
    ra_all, dec_all = np.concatenate(ra), np.clip(np.concatenate(dec), -90, 90)
    ulp_ra, ulp_dec = np.spacing(np.abs(ra_all) + 1e-300), np.spacing(np.abs(dec_all) + 1e-300)
    ra_all = np.concatenate([ra_all, ra_all + ulp_ra, ra_all - ulp_ra, ra_all])
    dec_all = np.concatenate([dec_all, dec_all, dec_all, np.clip(dec_all + ulp_dec, -90, 90)])
    return ra_all, dec_all


def test_brick_names_and_centres_equal_the_string_implementation_exactly():
    from lensarray.hosts.bricks import brick_centre

    ra, dec = _edge_positions(200_000)
    want, (ra_c, dec_c) = _reference_brickname_of(ra, dec)
    got = brickname_of(ra, dec)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    got_c = brick_centre(ra, dec)
    assert np.array_equal(got_c[0], ra_c) and np.array_equal(got_c[1], dec_c)
    # shapes are kept (a scalar, a 2-d block)
    assert brickname_of(10.0, 89.99).shape == () and str(brickname_of(10.0, 89.99)) == "1800p900"
    assert np.array_equal(brickname_of(ra[:12].reshape(3, 4), dec[:12].reshape(3, 4)), want[:12].reshape(3, 4))


def _reference_host_properties(pair_ids, cfg):
    """synthetic_host_properties before the fast paths (all columns drawn, scipy.stats CDF,
    every sky try over every pair, string brick names)."""
    from scipy.special import ndtri
    from scipy.stats import norm

    from lensarray.hosts.synthetic import _galactic_b
    from lensarray.rng import Stream, pair_uniforms

    ids = np.asarray(pair_ids, dtype=np.int64)
    bands = list(cfg.run.bands)
    c = CALIBRATION
    u = np.clip(pair_uniforms(cfg.run.seed, ids, Stream.HOST_PROPS, 16), 1e-12, 1 - 1e-12)
    z = ndtri(u)
    lo_s, hi_s = np.sin(np.radians(c["dec_range"]))
    ra, dec = np.full(ids.size, np.nan), np.full(ids.size, np.nan)
    for t in range(4):
        r_t = 360.0 * u[:, 2 * t]
        d_t = np.degrees(np.arcsin(lo_s + (hi_s - lo_s) * u[:, 2 * t + 1]))
        ok = np.isnan(ra) & (np.abs(_galactic_b(r_t, d_t)) > c["min_abs_b"])
        ra[ok], dec[ok] = r_t[ok], d_t[ok]
    rest = np.isnan(ra)
    ra[rest], dec[rest] = 360.0 * u[rest, 6], np.degrees(np.arcsin(lo_s + (hi_s - lo_s) * u[rest, 7]))
    dev = u[:, 8] < c["dev_fraction"]
    mu_m = np.where(dev, c["dev_r_mag"][0], c["ser_r_mag"][0])
    sd_m = np.where(dev, c["dev_r_mag"][1], c["ser_r_mag"][1])
    lo = norm.cdf((cfg.hosts.r_mag_min - mu_m) / sd_m)
    hi = norm.cdf((cfg.hosts.r_mag_max - mu_m) / sd_m)
    r_mag = mu_m + sd_m * ndtri(np.clip(lo + (hi - lo) * u[:, 9], 1e-12, 1 - 1e-12))
    med_re = np.where(dev, c["dev_reff"][0], c["ser_reff"][0])
    sig_re = np.where(dev, c["dev_reff"][1], c["ser_reff"][1])
    reff = np.clip(med_re * np.exp(sig_re * z[:, 10] - 0.2 * (r_mag - mu_m)), 0.3, 6.0)
    n_sersic = np.where(dev, 4.0, c["ser_n"][0] + (c["ser_n"][1] - c["ser_n"][0]) * u[:, 11])
    q = c["q"][0] + (c["q"][1] - c["q"][0]) * u[:, 12]
    ang = np.pi * u[:, 13]
    e = (1 - q) / (1 + q)
    g_r = c["g_r"][0] + c["g_r"][1] * np.clip(z[:, 14], -2.5, 2.5)
    r_z = c["r_z"][0] + c["r_z"][1] * np.clip(z[:, 15], -2.5, 2.5)
    offsets = {"g": g_r, "r": 0.0 * g_r, "i": -0.5 * r_z, "z": -r_z}
    host_mag = np.stack([r_mag + offsets[b] for b in bands], axis=1)
    v = np.clip(pair_uniforms(cfg.run.seed, ids, Stream.HOST_PROPS + 100, 2 + 2 * len(bands)), 1e-12, 1 - 1e-12)
    psf_r = np.clip(c["psf_r"][0] * np.exp(c["psf_r"][1] * ndtri(v[:, 0])), 0.8, 2.6)
    psf = np.stack(
        [np.clip(psf_r * c["psf_ratio"][b] * np.exp(0.05 * ndtri(v[:, 2 + k])), 0.7, 3.0) for k, b in enumerate(bands)],
        axis=1,
    )
    des = dec < c["des_dec_max"]
    depth = np.stack(
        [
            np.where(des, c["depth_des"][b], c["depth_decals"][b])
            + c["depth_sigma"] * np.clip(ndtri(v[:, 2 + len(bands) + k]), -3, 3)
            for k, b in enumerate(bands)
        ],
        axis=1,
    )
    return {
        "ra": ra,
        "dec": dec,
        "brickname": _reference_brickname_of(ra, dec)[0],
        "psf_fwhm": psf.astype(np.float32),
        "psfdepth": depth.astype(np.float32),
        "host_mag": host_mag.astype(np.float32),
        "host_reff": reff.astype(np.float32),
        "host_n": n_sersic.astype(np.float32),
        "host_e1": (e * np.cos(2 * ang)).astype(np.float32),
        "host_e2": (e * np.sin(2 * ang)).astype(np.float32),
        "host_id": ids.copy(),
    }


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"run.bands": ["z", "g", "i", "r"], "run.seed": 987654321, "hosts.r_mag_min": 17, "hosts.r_mag_max": 21.5},
        {"run.bands": ["i"], "run.seed": 0},
    ],
)
def test_host_properties_equal_the_reference_implementation_exactly(make_cfg, over):
    from lensarray.hosts.synthetic import HOST_FACTS

    cfg = make_cfg(4000).replace(**over)
    rng = np.random.default_rng(8)
    # many random blocks, unsorted ids with repeats, and ids far out
    ids = np.concatenate([np.arange(30_000), rng.integers(0, 2**40, 3000), [5, 5, 4095, 4096, 0]])
    ids[:30_000] = rng.permutation(30_000)
    want = _reference_host_properties(ids, cfg)
    got = synthetic_host_properties(ids, cfg)
    assert list(got) == list(want) == list(HOST_FACTS)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k
    # a subset of the facts (the split planner's) has the same values, and only those keys
    for fields in (("ra", "dec", "psf_fwhm", "psfdepth"), ("brickname",), ("host_reff", "psfdepth"), ()):
        part = synthetic_host_properties(ids, cfg, fields=fields)
        assert sorted(part) == sorted(fields)
        for k in fields:
            assert np.array_equal(part[k], want[k]), (fields, k)


def test_host_properties_refuse_an_unknown_fact(make_cfg):
    from lensarray.errors import BadInputError

    with pytest.raises(BadInputError, match=r"fields = \['colour'\]: allowed host facts ra, dec"):
        synthetic_host_properties(np.arange(3), make_cfg(10), fields=("ra", "colour"))


def test_pair_uniforms_equal_the_block_layout_element_by_element():
    from lensarray.rng import RNG_BLOCK, Stream, pair_uniforms

    rng = np.random.default_rng(4)
    runs = [np.arange(RNG_BLOCK - 300, 2 * RNG_BLOCK + 50), np.arange(7, 9)]  # whole runs across blocks
    ids = np.concatenate([*runs, rng.integers(0, 5 * RNG_BLOCK, 500), [3, 3, 0], rng.integers(0, 2**40, 5)])
    for k, attempt, order in ((1, 0, None), (6, 2, rng.permutation(ids.size))):
        sel = ids if order is None else ids[order]
        got = pair_uniforms(21, sel, Stream.SOURCE, k, attempt=attempt)
        blocks = {
            b: np.random.Generator(
                np.random.PCG64(np.random.SeedSequence(21, spawn_key=(0x0B10C, int(Stream.SOURCE), attempt, int(b))))
            ).random((k, RNG_BLOCK))
            for b in np.unique(sel // RNG_BLOCK)
        }
        want = np.array([blocks[p // RNG_BLOCK][:, p % RNG_BLOCK] for p in sel])
        assert got.shape == (sel.size, k) and np.array_equal(got, want)


def test_host_properties_of_some_bands_are_those_bands_columns(make_cfg):
    from lensarray.errors import BadInputError

    cfg = make_cfg(4000).replace(**{"run.bands": ["g", "r", "i", "z"]})
    ids = np.arange(9000)
    every = synthetic_host_properties(ids, cfg)
    for bands in (["r"], ["z", "g"], ["i"]):
        part = synthetic_host_properties(ids, cfg, bands=bands)
        cols = [cfg.run.bands.index(b) for b in bands]
        for k in ("psf_fwhm", "psfdepth", "host_mag"):
            assert np.array_equal(part[k], every[k][:, cols]), (bands, k)
        assert np.array_equal(part["host_reff"], every["host_reff"])
    with pytest.raises(BadInputError, match=r"bands = \['y'\]: allowed bands of run.bands"):
        synthetic_host_properties(ids[:3], cfg, bands=["y"])
