"""Diagnose real cubes built by the pipeline (small, synchronous): derived quantities agree with
the pixels, the hard core mask empties the core, the null cube passes the null gate."""

import json

import numpy as np
import pytest

pipeline = pytest.importorskip("lensarray.pipeline", reason="lensarray.pipeline not available yet")
pytest.importorskip("lensarray.store", reason="lensarray.store not available yet")

from lensarray.cli import main  # noqa: E402
from lensarray.cube import open_cube  # noqa: E402
from lensarray.diagnostics import diagnose  # noqa: E402

pytestmark = pytest.mark.slow  # builds three 128-pair cubes

N_PAIRS = 128


@pytest.fixture(scope="module")
def cubes(tmp_path_factory, make_cfg):
    root = tmp_path_factory.mktemp("e2e")
    out = {}
    for name, over in (
        ("plain", {}),
        ("hard5", {"core_mask.policy": "hard", "core_mask.radius": 5.0}),
        ("null", {"run.null": True}),
    ):
        path = str(root / f"{name}.zarr")
        cfg = make_cfg(N_PAIRS, shard=64, chunk=16, size=64, seed=2026, **over)
        pipeline.build(cfg, path, progress=False)
        out[name] = path
    return out


def test_plain_cube_derived_quantities_match_pixels(cubes):
    ds = open_cube(cubes["plain"])
    res, _ = diagnose(ds, progress=False, n_boot=20)
    assert res["n_pairs"] == N_PAIRS
    # the stored core_flux_frac and arc_snr are what the stored arcs and invvar say
    assert res["core_flux"]["max_abs_diff_vs_stored"] < 1e-4
    assert res["arc_snr"]["max_rel_diff_vs_measured"] < 1e-3
    # hosts and invvar are shared: lens and control differ by the arc only
    assert res["systematics"]["flags"] == [], res["systematics"]["flags"]
    assert res["leakage"]["flagged"] == [], res["leakage"]["flagged"]
    assert 0.4 < res["core_lr"]["auc"] <= 1.0


def test_hard_mask_empties_the_core(cubes):
    ds = open_cube(cubes["hard5"])
    res, _ = diagnose(ds, progress=False, n_boot=20, ablation=None)
    for band, info in res["core_flux"]["bands"].items():
        assert info["q75"] == pytest.approx(0.0, abs=1e-6), band
    arc = ds["arc"].isel(pair=slice(0, 16)).values
    yy, xx = np.mgrid[0 : arc.shape[-1], 0 : arc.shape[-1]]
    c = arc.shape[-1] // 2
    assert np.all(arc[..., np.hypot(yy - c, xx - c) < 5.0] == 0)


def test_cli_on_real_cubes_null_gate(cubes, tmp_path):
    rc = main(
        [
            "diagnose",
            cubes["plain"],
            "--null",
            cubes["null"],
            "--out",
            str(tmp_path),
            "--no-fail",
            "--bootstrap",
            "20",
            "--no-progress",
        ]
    )
    assert rc == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    gates = {g["name"]: g for g in rep["gates"]}
    assert gates["null_identity"]["passed"] and gates["null_identity"]["status"] == "pass"
    assert rep["null_identity"]["max_abs_arc"] == 0.0
    assert (tmp_path / "report.html").stat().st_size > 50_000
