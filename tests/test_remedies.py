"""Remedies that keep the label true: S/N calibrated on the stored arc, the S/N floor, the
core-matched control (one function for accessor, loader and diagnostics), the aperture S/N."""

import json

import numpy as np
import pytest

from lensarray.config import RunConfig
from lensarray.cube import NEGATIVE_KINDS, template
from lensarray.derived import aperture_snr, matched_filter_snr
from lensarray.masking import control_arc_weights, control_stamp, core_mask_weights, policy_attrs
from lensarray.pipeline import render_pairs, render_physical

IDS = np.arange(24, dtype=np.int64)


@pytest.fixture(scope="module")
def base():
    cfg = RunConfig().replace(**{"run.n_pairs": 24})
    return cfg, render_physical(IDS, cfg)


def _target(cfg):
    from lensarray.sampling import sample_params

    return sample_params(IDS, cfg, {"psf_fwhm": np.ones((IDS.size, 3))})["target_snr"]


@pytest.mark.parametrize("policy", ["hard:5", "hard:7", "taper:5:1"])
def test_calibrate_after_mask_gives_stored_snr_equal_to_target(base, policy):
    cfg0, phys = base
    name, *nums = policy.split(":")
    over = {"core_mask.policy": name, "core_mask.radius": float(nums[0]), "brightness.snr_floor": 0.0}
    if name == "taper":
        over["core_mask.width"] = float(nums[1])
    cfg = cfg0.replace(**over)  # snr_calibrate "auto": stored, because a mask is set
    out = render_pairs(IDS, cfg, physical=phys)
    target = _target(cfg)
    # the stored arc's matched filter, recomputed from the stored pixels
    snr = matched_filter_snr(out["arc"][:, 1], out["invvar"][:, 1])
    ok = np.isfinite(snr) & (snr > 0)
    assert ok.sum() >= 20
    np.testing.assert_allclose(snr[ok], target[ok], rtol=2e-5)
    np.testing.assert_allclose(out["arc_snr"][ok], target[ok], rtol=2e-5)
    # calibrated before the mask (the textbook), stored S/N falls below target
    before = render_pairs(IDS, cfg.replace(**{"brightness.snr_calibrate": "unmasked"}), physical=phys)
    assert np.all(before["arc_snr"][ok] <= target[ok] * (1 + 1e-5)) and np.any(before["arc_snr"][ok] < 0.9 * target[ok])


def test_aperture_calibration_hits_the_aperture_target(base):
    cfg0, phys = base
    cfg = cfg0.replace(**{"brightness.snr_definition": "aperture", "brightness.snr_floor": 0.0})
    out = render_pairs(IDS, cfg, physical=phys)
    ok = np.isfinite(out["arc_snr_aperture"]) & (out["arc_snr_aperture"] > 0)
    np.testing.assert_allclose(out["arc_snr_aperture"][ok], _target(cfg)[ok], rtol=2e-5)


def test_aperture_snr_known_answer():
    # a flat arc of 1 nmgy/pixel on an annulus, invvar 4 (sigma 0.5): S/N = N / (0.5 sqrt(N)) = 2 sqrt(N)
    size = 33
    o = np.arange(size) - size // 2
    r = np.hypot(o[:, None], o[None, :])
    arc = np.where(np.abs(r - 8) < 2, 1.0, 0.0)[None]
    iv = np.full_like(arc, 4.0)
    npix = int((np.abs(r - 8) < 2).sum())
    got = aperture_snr(arc, iv, np.array([8.0]), 2.0)
    assert got[0] == pytest.approx(2 * np.sqrt(npix))
    # off-centre lens: the annulus follows the lens centre
    shifted = np.roll(arc, 3, axis=-1)
    assert aperture_snr(shifted, iv, np.array([8.0]), 2.0, centre=(np.array([3.0]), np.array([0.0])))[
        0
    ] == pytest.approx(2 * np.sqrt(npix))
    assert aperture_snr(arc, iv, np.array([8.0]), 2.0)[0] < matched_filter_snr(arc, iv)[0] * 1.0001


def test_snr_floor_labels_or_redraws_never_a_silent_lens(base):
    cfg0, phys = base
    cfg = cfg0.replace(
        **{
            "core_mask.policy": "hard",
            "core_mask.radius": 7.0,
            "brightness.snr_calibrate": "unmasked",
            "brightness.snr_floor": 2.0,
        }
    )
    out = render_pairs(IDS, cfg, physical=phys)
    code = NEGATIVE_KINDS.index("below_snr_floor")
    below = out["arc_snr"] < 2.0
    assert below.any()
    assert np.all(out["hard_negative"][below] == code) and np.all(out["hard_negative"][~below] == 0)
    red = render_pairs(IDS, cfg.replace(**{"brightness.snr_floor_action": "redraw"}), physical=phys)
    lens = red["hard_negative"] == 0
    assert lens.sum() > (~below).sum()  # re-drawn pairs became real lenses
    assert np.all(red["arc_snr"][lens] >= 2.0)
    assert np.all(red["hard_negative"][~lens] == code)
    # pairs above the floor keep their first draw; re-draws are deterministic
    np.testing.assert_array_equal(red["theta_e"][~below], out["theta_e"][~below])
    again = render_pairs(IDS, cfg.replace(**{"brightness.snr_floor_action": "redraw"}))
    for k in red:
        np.testing.assert_array_equal(red[k], again[k])


def test_null_cube_keeps_its_labels(base):
    cfg0, phys = base
    out = render_pairs(IDS, cfg0.replace(**{"run.null": True}), physical=phys)
    assert np.all(out["hard_negative"] == 0) and not out["arc"].any()


def _cube_from(out, cfg):
    ds = template(
        IDS.size, list(cfg.run.bands), cfg.run.size, attrs={"config": cfg.to_json(), **policy_attrs(cfg)}, chunk_pairs=8
    )
    for k, v in out.items():
        ds[k] = (ds[k].dims, v, ds[k].attrs)
    return ds


def test_core_matched_control_one_function_everywhere(base, tmp_path):
    cfg0, phys = base
    cfg = cfg0.replace(
        **{
            "core_mask.policy": "taper",
            "core_mask.radius": 5.0,
            "core_mask.width": 1.0,
            "core_mask.apply_to": "control",
        }
    )
    out = render_pairs(IDS, cfg, physical=phys)
    whole = render_pairs(
        IDS, cfg0.replace(**{"brightness.snr_calibrate": "stored", "core_mask.policy": "none"}), physical=phys
    )
    # the lens keeps its physical arc (same shape as the unmasked arc, only the brightness scale differs)
    ratio = out["arc"][:, 1].sum(axis=(1, 2)) / whole["arc"][:, 1].sum(axis=(1, 2))
    np.testing.assert_allclose(out["arc"][:, 1], whole["arc"][:, 1] * ratio[:, None, None], rtol=1e-4, atol=1e-9)
    w_core = control_arc_weights(64, "taper", 5.0, 1.0, "control")
    np.testing.assert_allclose(w_core, 1 - core_mask_weights(64, "taper", 5.0, 1.0))
    expect_control = out["host"] + out["arc"] * w_core
    # stored S/N is that of lens - control = arc * w, calibrated to target
    d = out["arc"] * core_mask_weights(64, "taper", 5.0, 1.0)
    np.testing.assert_allclose(out["arc_snr"], matched_filter_snr(d[:, 1], out["invvar"][:, 1]), rtol=1e-5)

    ds = _cube_from(out, cfg)
    assert "core-matched" in ds.attrs["control_stamp"]
    assert json.loads(ds.attrs["core_mask_policy"])["apply_to"] == "control"
    st = ds.lensarray.stamps()
    ctrl = st.where(st.role == "control", drop=True).values
    np.testing.assert_array_equal(ctrl, expect_control.astype(np.float32))
    # the core pixels of lens and control are (nearly) identical: the taper leaves ~0 arc at r << 5
    lens = st.where(st.role == "lens", drop=True).values
    c = 32
    assert (
        np.abs(lens[:, :, c - 1 : c + 2, c - 1 : c + 2] - ctrl[:, :, c - 1 : c + 2, c - 1 : c + 2]).max()
        < 1e-3 * np.abs(out["arc"]).max()
    )

    # the training loader hands out the same control stamps
    from lensarray.training import batches

    got = {}
    for b in batches(ds, split=None, batch_size=16, augment=(), shuffle_buffer=0):
        for img, p, role in zip(b["images"], b["pair"], b["role"], strict=True):
            if role == 0:
                got[int(p)] = img
    np.testing.assert_array_equal(np.stack([got[p] for p in range(IDS.size)]), expect_control.astype(np.float32))

    # and so do the diagnostics' central squares
    from lensarray.diagnostics.features import core_box_features

    sq = core_box_features(ds, np.arange(IDS.size), box=10, progress=False)
    box = expect_control[:, :, 27:37, 27:37].reshape(IDS.size, -1).astype(np.float32)
    np.testing.assert_array_equal(sq["control"], box)

    # diagnose's one pixel pass measures the control role on the core-matched control too, and
    # the label S/N on lens - control
    from lensarray.diagnostics.features import measure_spec, pair_table
    from lensarray.geometry import central_slice, core_pixels

    spec = measure_spec(ds, edge_radius=5.0)
    table = pair_table(ds, spec=spec, lr_index=np.arange(IDS.size), progress=False)
    np.testing.assert_allclose(table["arc_snr_measured"].values, out["arc_snr"], rtol=1e-4)
    np.testing.assert_allclose(ds.lensarray.arc_snr().values, out["arc_snr"], rtol=1e-4)
    ctrl32 = expect_control.astype(np.float32).astype(np.float64)
    core = core_pixels(64, spec.core_radius)
    np.testing.assert_allclose(
        table["core_mean"].sel(role="control").values, ctrl32[..., core].mean(axis=-1), rtol=1e-6
    )
    sl = central_slice(64, spec.side)
    np.testing.assert_array_equal(
        table["central"].sel(role="control").values, expect_control.astype(np.float32)[..., sl, sl]
    )


def test_control_stamp_is_host_without_core_matching():
    host = np.ones((2, 3, 8, 8), np.float32)
    assert control_stamp(host, host * 5, None) is host
    assert control_arc_weights(8, "hard", 3.0, 1.0, "arc") is None
    assert control_arc_weights(8, "none", 3.0, 1.0, "control") is None


def test_policies_recorded_in_attrs():
    cfg = RunConfig().replace(**{"core_mask.policy": "hard", "core_mask.radius": 5.0})
    from lensarray.store import cube_attrs

    attrs = cube_attrs(cfg)
    cal = json.loads(attrs["arc_snr_calibration"])
    assert cal == {
        "definition": "matched_filter",
        "applies_to": "auto",
        "floor": 0.5,
        "floor_action": "label",
        "floor_redraws": 8,
    }
    assert "lens - control" in attrs["arc_snr_definition"]
    assert "theta_E" in attrs["arc_snr_aperture_definition"] and "0.5 arcsec" in attrs["arc_snr_aperture_definition"]
    assert attrs["control_stamp"] == "host" and attrs["core_centre"] == "stamp"


def test_lens_centred_core_flux_frac(base):
    cfg0, _ = base
    cfg = cfg0.replace(**{"lens.offset_sigma": 0.5, "brightness.snr_floor": 0.0})
    stamp = render_pairs(IDS[:8], cfg)
    lens = render_pairs(IDS[:8], cfg.replace(**{"diagnostics.core_centre": "lens"}))
    np.testing.assert_array_equal(stamp["arc"], lens["arc"])
    from lensarray.masking import radius_map

    ps = cfg.run.pixel_scale
    r = radius_map(64, (stamp["lens_x"].astype(float) / ps, stamp["lens_y"].astype(float) / ps))
    a = stamp["arc"].astype(float)
    expect = (a * (r < 5.0)[:, None]).sum(axis=(2, 3)) / a.sum(axis=(2, 3))
    np.testing.assert_allclose(lens["core_flux_frac"], expect, rtol=1e-5)
    assert not np.allclose(lens["core_flux_frac"], stamp["core_flux_frac"])
