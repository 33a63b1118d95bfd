"""The build's derive step (``pipeline._brighten``: brightness, core mask, arc statistics, S/N)
is bit-identical to its previous implementation, kept here as the reference.

The in-place rewrite (issue #14) must not change a stored bit: every output of the reference and
of the build is compared with ``np.array_equal`` (NaNs equal) on shards with dead pixels, a stamp
whose S/N band has no data at all, off-centre lenses, and every core-mask / S/N configuration.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lensarray import pipeline
from lensarray.config import RunConfig
from lensarray.derived import aperture_snr, arc_statistics, matched_filter_snr
from lensarray.geometry import offsets, radius_grid

N_PAIRS = 12


def _radius_grid_ref(size, center):
    dy, dx = offsets(size)
    cx = np.asarray(center[0], dtype=np.float64)[..., None, None]
    cy = np.asarray(center[1], dtype=np.float64)[..., None, None]
    return np.hypot(dy - cy, dx - cx)


def _aperture_snr_ref(arcs, invvar, theta_e_px, halfwidth_px, centre=None):
    a = np.asarray(arcs, dtype=np.float64)
    iv = np.asarray(invvar, dtype=np.float64)
    n, size = a.shape[0], a.shape[-1]
    r = radius_grid(size) if centre is None else _radius_grid_ref(size, centre)
    te = np.asarray(theta_e_px, dtype=np.float64).reshape(n, 1, 1)
    sel = (np.abs(r - te) < halfwidth_px) & (iv > 0)
    flux = np.sum(np.where(sel, a, 0.0), axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.sum(np.where(sel, 1.0 / np.where(iv > 0, iv, 1.0), 0.0), axis=(-2, -1))
        return np.where(var > 0, flux / np.sqrt(var), np.nan)


def _brighten_ref(unit_arcs, params, invvar, cfg):
    """``pipeline._brighten`` as it was before the in-place rewrite (a chain of temporaries)."""
    from lensarray.masking import core_mask_weights
    from lensarray.physics.photometry import mag_to_nmgy, nmgy_to_mag
    from lensarray.sampling import calibrate_flux

    r, cm, B = cfg.run, cfg.core_mask, cfg.brightness
    bands = list(r.bands)
    snr_band = bands.index(B.snr_band)
    n = unit_arcs.shape[0]
    w = None if cm.policy == "none" else core_mask_weights(r.size, cm.policy, cm.radius, cm.width)
    lens_px = (
        np.asarray(params.get("lens_x", np.zeros(n)), np.float64) / r.pixel_scale,
        np.asarray(params.get("lens_y", np.zeros(n)), np.float64) / r.pixel_scale,
    )
    theta_px = np.asarray(params["theta_e"], np.float64) / r.pixel_scale
    half_px = B.aperture_halfwidth / r.pixel_scale
    observed = invvar > 0

    def snr_of(signal_band, iv_band, definition):
        if definition == "aperture":
            return _aperture_snr_ref(signal_band, iv_band, theta_px, half_px, centre=lens_px)
        return matched_filter_snr(signal_band, iv_band)

    color = np.asarray(params["src_color"], dtype=np.float64)
    if B.mode == "snr":
        stored = B.snr_calibrate == "stored" or (B.snr_calibrate == "auto" and cm.policy != "none")
        rel = 10.0 ** (-0.4 * color[:, snr_band])
        unit_sn = unit_arcs[:, snr_band].astype(np.float64) * rel[:, None, None]
        if stored and w is not None:
            unit_sn = unit_sn * w
        unit_sn = np.where(observed[:, snr_band], unit_sn, 0.0)
        unit_snr = snr_of(unit_sn, invvar[:, snr_band], B.snr_definition)
        flux_ref = calibrate_flux(unit_arcs, invvar, params["target_snr"], snr_band, unit_snr=unit_snr)
        src_mag = nmgy_to_mag(flux_ref, r.zero_point)[:, None] + color
    else:
        src_mag = np.asarray(params["src_mag"], dtype=np.float64)
    flux = mag_to_nmgy(src_mag, r.zero_point)
    arc = unit_arcs * np.nan_to_num(flux, nan=0.0)[:, :, None, None].astype(np.float32)
    if w is not None and cm.apply_to == "arc":
        arc = arc * w
    arc = np.where(observed, arc, np.float32(0.0))
    if r.null:
        arc = arc * np.float32(0.0)
    arc = arc.astype(np.float32)
    signal = arc if (w is None or cm.apply_to == "arc") else arc * w
    centre = lens_px if cfg.diagnostics.core_centre == "lens" else None
    stats = arc_statistics(
        arc, invvar, core_radius=cfg.diagnostics.core_radius, snr_band_index=snr_band, core_centre=centre
    )
    stats["arc_snr"] = snr_of(signal[:, snr_band], invvar[:, snr_band], "matched_filter").astype(np.float32)
    stats["arc_snr_aperture"] = snr_of(signal[:, snr_band], invvar[:, snr_band], "aperture").astype(np.float32)
    stats["arc"], stats["src_mag"] = arc, src_mag
    return stats


def _cfg(**over):
    base = {"run.n_pairs": N_PAIRS, "run.shard_pairs": N_PAIRS, "run.chunk_pairs": 4, "lens.offset_sigma": 0.2}
    return RunConfig().replace(**{**base, **over}).validate()


@pytest.fixture(scope="module")
def physical():
    cfg = _cfg()
    phys = pipeline.render_physical(np.arange(N_PAIRS, dtype=np.int64), cfg)
    invvar = np.array(phys["hosts"]["invvar"], copy=True)
    snr_band = list(cfg.run.bands).index(cfg.brightness.snr_band)
    invvar[0, :, 30:34, :] = 0.0  # a dead strip through the arc
    invvar[1, snr_band] = 0.0  # no data in the S/N band at all: unit S/N 0, flux NaN
    invvar[2] = 0.0  # a stamp with no data anywhere
    invvar[3, :, ::7, ::5] = 0.0  # scattered dead pixels
    phys["hosts"] = {**phys["hosts"], "invvar": invvar}
    assert np.ptp(phys["params"]["lens_x"]) > 0  # off-centre lenses exercise the per-pair grids
    return phys


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k in want:
        g, w = np.asarray(got[k]), np.asarray(want[k])
        assert g.dtype == w.dtype and g.shape == w.shape, k
        assert np.array_equal(g, w, equal_nan=True), k


_CASES = [
    {"core_mask.policy": p, "core_mask.apply_to": a, "brightness.snr_definition": d, "diagnostics.core_centre": c}
    for p, a, d, c in itertools.product(
        ("none", "hard", "taper"), ("arc", "control"), ("matched_filter", "aperture"), ("stamp", "lens")
    )
    if not (p == "none" and a == "control")
] + [
    {"core_mask.policy": "taper", "brightness.snr_calibrate": "unmasked"},
    {"core_mask.policy": "hard", "brightness.snr_calibrate": "stored", "core_mask.apply_to": "control"},
    {"brightness.mode": "mag"},
    {"run.null": True, "core_mask.policy": "taper"},
]


@pytest.mark.parametrize("over", _CASES, ids=lambda o: ",".join(f"{k.split('.')[-1]}={v}" for k, v in o.items()))
def test_brighten_bit_identical_to_reference(physical, over):
    cfg = _cfg(**over)
    from lensarray.sampling import sample_params

    # drawn for this case's configuration (mode "mag" draws src_mag); the arcs stay those of the fixture
    params = sample_params(physical["pair_ids"], cfg, physical["hosts"])
    unit_arcs = physical["unit_arcs"]
    before = unit_arcs.copy()
    invvar = physical["hosts"]["invvar"]
    want = _brighten_ref(unit_arcs, params, invvar, cfg)
    got = pipeline._brighten(unit_arcs, params, invvar, cfg)
    _assert_same(got, want)
    assert np.array_equal(unit_arcs, before)  # in place on its own arrays only, never the input
    assert np.isnan(got["arc_snr_aperture"][2]) and got["arc_snr"][2] == 0  # the no-data stamp


def test_radius_grid_and_aperture_snr_match_reference(physical):
    rng = np.random.default_rng(3)
    cx, cy = rng.normal(0, 2, 7), rng.normal(0, 2, 7)
    for size in (31, 64):
        assert np.array_equal(radius_grid(size, (cx, cy)), _radius_grid_ref(size, (cx, cy)))
    assert np.array_equal(radius_grid(64, (1.5, -0.25)), _radius_grid_ref(64, (1.5, -0.25)))
    arcs = physical["unit_arcs"][:, 1]
    iv = physical["hosts"]["invvar"][:, 1]
    te = np.asarray(physical["params"]["theta_e"]) / 0.262
    for centre in (None, (cx[:1].repeat(N_PAIRS), cy[:1].repeat(N_PAIRS))):
        assert np.array_equal(
            aperture_snr(arcs, iv, te, 1.9, centre=centre),
            _aperture_snr_ref(arcs, iv, te, 1.9, centre=centre),
            equal_nan=True,
        )


def _noise_and_masks_ref(ids, props, images, cfg):
    """The host noise step before issue #14's per-pair rewrite (one whole-shard normals buffer)."""
    from lensarray.hosts.synthetic import INVVAR_KEEPBITS, draw_mask_feature
    from lensarray.physics.photometry import psfdepth_mag_to_sigma
    from lensarray.physics.psf import FWHM_TO_SIGMA
    from lensarray.quantize import round_mantissa
    from lensarray.rng import Stream, pair_rng

    size, n = cfg.run.size, images.shape[0]
    sig_psf = np.asarray(props["psf_fwhm"], dtype=np.float64) * FWHM_TO_SIGMA / cfg.run.pixel_scale
    nea = 4.0 * np.pi * sig_psf**2
    sky_sigma = psfdepth_mag_to_sigma(np.asarray(props["psfdepth"], np.float64), cfg.run.zero_point) / np.sqrt(nea)
    normals = np.empty_like(images)
    draws = np.empty((n, 3))
    for k, pid in enumerate(ids):
        g = pair_rng(cfg.run.seed, int(pid), Stream.HOST_NOISE)
        draws[k] = g.random(3)
        g.standard_normal(dtype=np.float32, out=normals[k])
    grads = (0.1 * draws[:, :2] - 0.05).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size - 1) - np.float32(0.5)
    plane = np.float32(1.0) + grads[:, 0, None, None] * xx + grads[:, 1, None, None] * yy
    invvar = round_mantissa((1.0 / sky_sigma**2).astype(np.float32)[:, :, None, None] * plane[:, None], INVVAR_KEEPBITS)
    normals /= np.sqrt(invvar)
    host = images
    host += normals
    maskbits = np.zeros((n, size, size), dtype=np.int32)
    for m in np.flatnonzero(draws[:, 2] < cfg.hosts.mask_rate):
        draw_mask_feature(pair_rng(cfg.run.seed, int(ids[m]), Stream.HOST_MASK), maskbits[m], invvar[m], host[m])
    return host, invvar, maskbits


def test_host_noise_bit_identical_to_reference():
    """The per-pair noise loop (two cache-resident buffers) stores exactly the previous pixels,
    invvar and maskbits, masked hosts included (mask_rate 0.5 so several are)."""
    from lensarray.hosts.synthetic import _host_images, _noise_and_masks, synthetic_host_properties

    cfg = _cfg(**{"hosts.mask_rate": 0.5, "run.n_pairs": 64})
    ids = np.arange(40, 40 + 24, dtype=np.int64)
    props = synthetic_host_properties(ids, cfg)
    images = _host_images(props, cfg)
    got = _noise_and_masks(ids, props, images.copy(), cfg)
    want = _noise_and_masks_ref(ids, props, images.copy(), cfg)
    assert (want[2] != 0).any(axis=(1, 2)).sum() >= 3  # several masked hosts
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and np.array_equal(g.view(np.uint8), w.view(np.uint8))
