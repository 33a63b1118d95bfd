"""Optional quantised storage (lensarray.quantize): the error bound in units of the pixel noise,
mantissa rounding, the store hook (attrs record, chunking-independent bytes, verify), and that
diagnose's gates and the core-LR AUC do not move on a quantised cube."""

import json

import numpy as np
import pytest

from lensarray import pipeline
from lensarray.config import ConfigError, RunConfig
from lensarray.cube import open_cube
from lensarray.hosts.synthetic import synthetic_hosts
from lensarray.quantize import apply_quantization, noise_step, quantize_to_noise, round_mantissa
from lensarray.store import open_group


def test_round_mantissa_relative_error_bound():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20000) * np.exp(rng.uniform(-30, 30, 20000))).astype(np.float32)
    for keep in (6, 10, 12, 20):
        r = round_mantissa(x, keep)
        rel = np.abs(r.astype(np.float64) - x) / np.abs(x)
        assert rel.max() <= 2.0 ** -(keep + 1) * (1 + 1e-6), keep
        assert rel.max() > 2.0 ** -(keep + 1) * 0.9  # the bound is tight: not rounding harder than asked
        trailing = r.view(np.uint32) & np.uint32((1 << (23 - keep)) - 1)
        assert (trailing == 0).all()
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    np.testing.assert_array_equal(round_mantissa(special, 8), special)
    np.testing.assert_array_equal(round_mantissa(x, 23), x)
    with pytest.raises(ValueError, match="allowed range"):
        round_mantissa(x, 24)


@pytest.mark.parametrize("step", [0.2, 0.05])
def test_noise_quantisation_error_bound_in_sigma(step):
    """|stored - exact| <= step/2 sigma in every pixel with data; uniform, unbiased, uncorrelated."""
    cfg = RunConfig().validate()
    h = synthetic_hosts(np.arange(48), cfg)
    q = quantize_to_noise(h["host"], h["invvar"], step)
    good = h["invvar"] > 0
    err_sigma = (q.astype(np.float64) - h["host"])[good] * np.sqrt(h["invvar"][good])
    assert np.abs(err_sigma).max() <= step / 2 + 1e-6
    qs = noise_step(h["invvar"], step)
    assert ((qs <= step / np.sqrt(h["invvar"].reshape(48, 3, -1).max(-1))) & (qs > 0)).all()
    # a power of two: exact multiples
    k = q / qs[..., None, None]
    np.testing.assert_array_equal(k, np.rint(k))
    # the noise dithers the quantiser: mean ~0, rms ~ q/sqrt(12) <= step/sqrt(12), no correlation
    # with the galaxy (error vs noise-free model)
    assert abs(err_sigma.mean()) < 0.01 * step
    assert err_sigma.std() <= step / np.sqrt(12) + 1e-3
    from lensarray.hosts.synthetic import _host_images, synthetic_host_properties

    model = _host_images(synthetic_host_properties(np.arange(48), cfg), cfg)[good]
    assert abs(np.corrcoef(err_sigma, model)[0, 1]) < 0.01
    # planes without data are kept
    iv = h["invvar"].copy()
    iv[0, 1] = 0
    np.testing.assert_array_equal(quantize_to_noise(h["host"], iv, step)[0, 1], h["host"][0, 1])


def test_quantize_config_ranges_are_one_line_errors():
    for field, bad in (("quantize.host_step", 0.5), ("quantize.host_step", 0.0), ("quantize.arc_keepbits", 3)):
        with pytest.raises(ConfigError) as exc:
            RunConfig().replace(**{field: bad}).validate()
        lines = [ln for ln in str(exc.value).splitlines()[1:] if ln.strip()]
        assert len(lines) == 1 and field in lines[0] and "allowed range" in lines[0]
    assert RunConfig().validate().quantize.host is False  # off by default


def _cfg(n, shard, chunk, **over):
    return (
        RunConfig()
        .replace(
            **{"run.n_pairs": n, "run.shard_pairs": shard, "run.chunk_pairs": chunk, "cluster.kind": "none", **over}
        )
        .validate()
    )


def _du(path):
    import os

    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def test_quantised_store_is_recorded_bounded_and_chunking_independent(tmp_path):
    from lensarray.commands.verify import verify_store

    q = {"quantize.host": True, "quantize.host_step": 0.2, "quantize.arc_keepbits": 12}
    a, b, lossless = (str(tmp_path / f"{k}.zarr") for k in ("a", "b", "l"))
    pipeline.build(_cfg(40, 16, 4, **q), a, progress=False)
    pipeline.build(_cfg(40, 8, 8, **q), b, progress=False)
    pipeline.build(_cfg(40, 16, 4), lossless, progress=False)
    ga, gb, gl = (open_group(u, mode="r") for u in (a, b, lossless))
    rec = json.loads(ga.attrs["quantization"])
    assert rec["host"]["step_sigma"] == 0.2 and rec["host"]["max_abs_error_sigma"] == 0.1
    assert rec["arc"]["keepbits"] == 12
    assert gl.attrs["quantization"] == ""
    for name in ("host", "arc", "invvar", "maskbits", "arc_snr"):
        np.testing.assert_array_equal(ga[name][:], gb[name][:], err_msg=name)  # any chunking, same bytes
    host, exact, iv = ga["host"][:], gl["host"][:], gl["invvar"][:]
    good = iv > 0
    assert (np.abs(host - exact)[good] * np.sqrt(iv[good])).max() <= 0.1 + 1e-6
    np.testing.assert_array_equal(gl["invvar"][:], iv)
    arc, arc_exact = ga["arc"][:], gl["arc"][:]
    # the relative bound is for normal floats: a subnormal (|x| < 1.2e-38, float32 round-off of
    # the PSF matrix products far from the arc) has fewer mantissa bits and may round to 0
    nz = np.abs(arc_exact) >= np.finfo(np.float32).tiny
    assert (np.abs(arc - arc_exact)[nz] / np.abs(arc_exact[nz])).max() <= 2.0**-13
    # the hook applies exactly the recorded rule: a re-render matches the stored bytes
    assert verify_store(a, sample=5, progress=False) == []
    fresh = apply_quantization(pipeline.render_pairs(np.arange(3), _cfg(40, 16, 4, **q)), ga.attrs["quantization"])
    np.testing.assert_array_equal(fresh["host"], host[:3])
    assert _du(a) < 0.75 * _du(lossless)


def test_diagnose_gates_and_core_lr_unchanged_on_a_quantised_cube(tmp_path):
    """Same pairs stored lossless and quantised (host step 0.2 sigma, arc 12 bits): every gate's
    verdict is the same and the core-LR AUC moves by less than its bootstrap CI half-width."""
    from lensarray.diagnostics import diagnose

    res = {}
    for kind, over in (("lossless", {}), ("quantised", {"quantize.host": True, "quantize.arc_keepbits": 12})):
        url = str(tmp_path / f"{kind}.zarr")
        pipeline.build(_cfg(384, 128, 16, **over), url, progress=False)
        res[kind], _ = diagnose(open_cube(url), progress=False, n_boot=50, ablation=None)
    lo, qu = res["lossless"], res["quantised"]
    assert [g["passed"] for g in lo["gates"]] == [g["passed"] for g in qu["gates"]]
    assert [g["name"] for g in lo["gates"]] == [g["name"] for g in qu["gates"]]
    a_l, a_q = lo["core_lr"]["auc"], qu["core_lr"]["auc"]
    half = (lo["core_lr"]["ci"][1] - lo["core_lr"]["ci"][0]) / 2
    print(f"core-LR AUC lossless {a_l:.4f} CI {lo['core_lr']['ci']}, quantised {a_q:.4f} CI {qu['core_lr']['ci']}")
    assert abs(a_l - a_q) < half
    for gl, gq in zip(lo["gates"], qu["gates"], strict=True):
        if isinstance(gl["value"], float) and isinstance(gq["value"], float) and gl.get("ci"):
            ci = gl["ci"]
            assert abs(gl["value"] - gq["value"]) < (ci[1] - ci[0]) / 2 + 1e-9, gl["name"]


def test_lazy_cube_holds_the_stored_quantised_values(tmp_path):
    """``lazy_cube`` with ``[quantize]`` on equals the stored cube bit for bit (host and arc
    quantised as stored, not the exact render), for another chunking too; quantising twice (the
    writer applies the record again) changes nothing."""
    q = {"quantize.host": True, "quantize.host_step": 0.2, "quantize.arc_keepbits": 12}
    cfg = _cfg(40, 16, 4, **q)
    url = str(tmp_path / "q.zarr")
    pipeline.build(cfg, url, progress=False)
    stored = open_cube(url)
    exact = pipeline.render_pairs(np.arange(40), cfg)
    for chunk in (None, 7):
        lazy = pipeline.lazy_cube(cfg, chunk_pairs=chunk)
        for name in ("host", "arc", "invvar", "maskbits", "arc_snr", "split"):
            np.testing.assert_array_equal(lazy[name].values, stored[name].values, err_msg=f"{name}, chunk {chunk}")
    assert not np.array_equal(stored["host"].values, exact["host"])  # really quantised
    rec = stored.attrs["quantization"]
    once = apply_quantization(exact, rec)
    twice = apply_quantization(once, rec)
    for name in ("host", "arc"):
        np.testing.assert_array_equal(twice[name], once[name], err_msg=name)
