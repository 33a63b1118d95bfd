"""End-to-end builds: bit-identical for any shard/chunk size and worker count; derived
quantities agree with the stored pixels; null and core-mask modes; CLI commands."""

import json

import numpy as np
import pytest

from lensarray import pipeline
from lensarray.cli import main
from lensarray.cube import VARIABLES, open_cube


@pytest.fixture(scope="module")
def ref(tmp_path_factory, make_cfg):
    url = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    pipeline.build(make_cfg(), url, progress=False)
    return url


def _same(a, b):
    da, db = open_cube(a), open_cube(b)
    for k in VARIABLES:
        np.testing.assert_array_equal(da[k].values, db[k].values, err_msg=k)


def test_bit_identical_for_other_shards_chunks_and_workers(ref, tmp_path, make_cfg):
    from distributed import Client, LocalCluster

    other = str(tmp_path / "o.zarr")
    pipeline.build(make_cfg(**{"run.shard_pairs": 24, "run.chunk_pairs": 4}), other, progress=False)
    _same(ref, other)
    dist = str(tmp_path / "d.zarr")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        pipeline.build(make_cfg(**{"run.shard_pairs": 8, "run.chunk_pairs": 8}), dist, progress=False, client=client)
    _same(ref, dist)


def test_lens_minus_control_is_the_arc_and_stats_match(ref):
    ds = open_cube(ref)
    st = ds.lensarray.stamps().values
    arc = ds["arc"].values
    np.testing.assert_array_equal(st[0::2] - st[1::2], (ds["host"].values + arc) - ds["host"].values)
    iv = ds["invvar"].values
    snr = np.sqrt((arc[:, 1].astype(np.float64) ** 2 * iv[:, 1]).sum(axis=(1, 2)))
    np.testing.assert_allclose(ds["arc_snr"].values, snr, rtol=1e-5)
    assert (arc[iv == 0] == 0).all()  # nothing injected where there is no data
    # calibrated S/N: unmasked arcs reach the target distribution's support [0.8, 50]
    assert ds["arc_snr"].min() >= 0.8 * (1 - 1e-4) and ds["arc_snr"].max() <= 50 * (1 + 1e-4)
    # inner image radius: SIS geometry, theta_E - beta, in pixels
    beta = np.hypot(ds["src_x"].values, ds["src_y"].values)
    te = ds["theta_e"].values
    want = np.where(beta < te, (te - beta) / 0.262, np.nan)
    np.testing.assert_allclose(ds["inner_image_r"].values, want, rtol=1e-4)
    assert np.isin(ds["split"].values, [0, 1, 2]).all()


def test_null_and_hard_mask(tmp_path, ref, make_cfg):
    null = str(tmp_path / "n.zarr")
    pipeline.build(make_cfg(**{"run.null": True}), null, progress=False)
    dn, dr = open_cube(null), open_cube(ref)
    assert float(np.abs(dn["arc"]).max()) == 0.0
    for k in ("host", "invvar", "maskbits", "theta_e", "src_mag", "split"):
        np.testing.assert_array_equal(dn[k].values, dr[k].values, err_msg=k)
    hard = str(tmp_path / "h.zarr")
    pipeline.build(make_cfg(**{"core_mask.policy": "hard", "core_mask.radius": 5.0}), hard, progress=False)
    dh = open_cube(hard)
    assert np.nanmax(dh["core_flux_frac"].values) == 0.0
    assert json.loads(dh.attrs["core_mask_policy"])["policy"] == "hard"


def test_cli_build_inspect_preview_verify(tmp_path, capsys):
    out = str(tmp_path / "c.zarr")
    assert (
        main(
            [
                "build",
                "--out",
                out,
                "--pairs",
                "16",
                "--shard-pairs",
                "8",
                "--chunk-pairs",
                "4",
                "--workers",
                "0",
                "--no-progress",
                "--core-mask",
                "taper:4:1",
            ]
        )
        == 0
    )
    assert main(["inspect", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pairs"] == 16 and info["shards_done"] == 2 and info["core_mask_policy"]["policy"] == "taper"
    png = tmp_path / "p.png"
    assert main(["preview", out, "--pairs", "0:4", "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000
    assert main(["verify", out, "--no-progress"]) == 0


def test_verify_detects_corruption(tmp_path, capsys):
    out = tmp_path / "c.zarr"
    assert (
        main(
            [
                "build",
                "--out",
                str(out),
                "--pairs",
                "16",
                "--shard-pairs",
                "8",
                "--chunk-pairs",
                "4",
                "--workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    chunk = out / "arc" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 3] ^= 0xFF
    chunk.write_bytes(bytes(data))
    assert main(["verify", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "shard 1" in err and "arc" in err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--pairs", "0"], "run.n_pairs = 0"),
        (["--core-mask", "box:3"], "--core-mask"),
        (["--shard-pairs", "10", "--chunk-pairs", "4"], "multiple of run.chunk_pairs"),
        (["--workers", "-1"], "--workers"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "bad.zarr"
    assert main(["build", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_split_planning_in_blocks_changes_nothing(monkeypatch):
    import lensarray.pipeline as pipeline
    from lensarray.config import RunConfig

    cfg = RunConfig().replace(**{"run.n_pairs": 700}).validate()
    whole = pipeline.plan_build(cfg).split_plan_json
    monkeypatch.setattr(pipeline, "_PLAN_BLOCK", 97)  # blocks that split shards and chunks
    assert pipeline.plan_build(cfg).split_plan_json == whole
