"""Fault tolerance with real processes: a SIGKILLed build client resumes; a worker killed
mid-build loses nothing; the cube equals a clean synchronous build array by array."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _servers import DaskProcesses, sigkill_after_shards

from lensarray.cube import VARIABLES, open_cube
from lensarray.store import completed_shards, open_group

LENSARRAY = str(Path(sys.executable).parent / "lensarray")
N, SHARD = 96, 8


def _assert_same(a_url, b_url):
    a, b = open_cube(a_url), open_cube(b_url)
    for k in VARIABLES:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, make_cfg):
    from lensarray import pipeline

    url = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    # size and seed of `lensarray build` without flags: the CLI builds below must equal this cube
    pipeline.build(make_cfg(N, shard=SHARD, chunk=4, size=None, seed=None), url, progress=False)
    return url


def _cli(out, *extra):
    return [
        LENSARRAY,
        "build",
        "--out",
        out,
        "--pairs",
        str(N),
        "--shard-pairs",
        str(SHARD),
        "--chunk-pairs",
        "4",
        "--no-progress",
        *extra,
    ]


def test_sigkilled_client_resumes_and_writes_only_missing_shards(tmp_path, reference):
    out = str(tmp_path / "c.zarr")
    proc = subprocess.Popen(
        _cli(out, "--workers", "0"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    before = sigkill_after_shards(proc, out)
    n_total = before.size
    assert 0 < before.sum() < n_total, "the kill must land mid-build"
    res = subprocess.run(_cli(out, "--workers", "0", "--resume"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"wrote {n_total - int(before.sum())} shards" in res.stderr
    _assert_same(out, reference)


def test_existing_store_refused_without_overwrite(tmp_path, reference):
    res = subprocess.run(_cli(reference, "--workers", "0"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "already exists" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_worker_killed_mid_build_loses_nothing(tmp_path, reference, make_cfg):
    from distributed import Client

    from lensarray import pipeline

    procs = DaskProcesses(3, tmp_path)
    try:
        cfg = make_cfg(N, shard=SHARD, chunk=4, size=None, seed=None)  # the client below runs it
        out = str(tmp_path / "dist.zarr")
        killed = []

        def on_done(i):
            if not killed:  # after the first shard lands, kill a worker while others are in flight
                procs.kill_worker(0)
                killed.append(i)

        with Client(procs.address, timeout="20s") as client:
            res = pipeline.build(cfg, out, client=client, progress=False, on_shard_done=on_done)
        assert killed and res.shards_written == res.n_shards
        assert completed_shards(open_group(out, mode="r")).all()
        _assert_same(out, reference)
    finally:
        procs.close()


def test_diagnose_survives_a_worker_kill(tmp_path, reference):
    from distributed import Client

    from lensarray.diagnostics import diagnose

    ds = open_cube(reference)
    sync, _ = diagnose(ds, progress=False, n_boot=10)
    procs = DaskProcesses(2, tmp_path)
    try:
        with Client(procs.address, timeout="20s") as client:
            fut = client.submit(time.sleep, 0)  # warm up
            fut.result()
            import threading

            threading.Timer(1.0, procs.kill_worker, args=(0,)).start()
            # diagnostics compute through the active distributed Client
            dist, _ = diagnose(open_cube(reference), progress=False, n_boot=10)
            assert client.run(lambda: 1)  # the surviving worker still answers
    finally:
        procs.close()
    assert dist["core_lr"]["auc"] == pytest.approx(sync["core_lr"]["auc"], abs=1e-12)
    assert dist["core_flux"]["bands"] == sync["core_flux"]["bands"]


def test_unreachable_scheduler_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "x.zarr")
    t0 = time.time()
    res = subprocess.run(
        _cli(out, "--scheduler", f"tcp://127.0.0.1:{port}"), capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and "cannot reach scheduler" in res.stderr, res.stderr
    assert len([ln for ln in res.stderr.splitlines() if "error" in ln]) == 1
    assert time.time() - t0 < 60


def test_read_only_location(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        # root ignores mode bits; /proc/1 is not writable even for root
        target = ro / "x.zarr" if not os.access(ro, os.W_OK) else Path("/proc/1/lensarray-test.zarr")
        res = subprocess.run(_cli(str(target), "--workers", "0"), capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and "read-only" in res.stderr
    finally:
        ro.chmod(0o755)


def _snapshot(root: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def _future_store(tmp_path: Path, make_cfg) -> tuple[Path, dict]:
    """A small cube relabelled as schema_version 99, and a snapshot of its files."""
    import zarr

    from lensarray import pipeline

    out = tmp_path / "future.zarr"
    # as `lensarray build --pairs 8 --shard-pairs 8 --chunk-pairs 4` (the resume test repeats it)
    pipeline.build(make_cfg(8, shard=8, chunk=4, size=None, seed=None), str(out), progress=False)
    zarr.open_group(str(out), mode="r+", zarr_format=3).attrs["schema_version"] = 99
    return out, _snapshot(out)


def test_store_of_another_schema_version_is_refused_and_untouched(tmp_path, make_cfg):
    out, before = _future_store(tmp_path, make_cfg)
    res = subprocess.run([LENSARRAY, "inspect", str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "schema_version 99" in res.stderr
    res = subprocess.run([LENSARRAY, "verify", str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "schema_version 99" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert _snapshot(out) == before


def test_resume_refuses_a_store_of_another_schema_version(tmp_path, make_cfg):
    out, before = _future_store(tmp_path, make_cfg)
    res = subprocess.run(
        [
            LENSARRAY,
            "build",
            "--out",
            str(out),
            "--pairs",
            "8",
            "--shard-pairs",
            "8",
            "--chunk-pairs",
            "4",
            "--workers",
            "0",
            "--no-progress",
            "--resume",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert _snapshot(out) == before
    assert res.returncode == 2 and "schema_version 99" in res.stderr, res.stderr


def test_progress_prints_under_a_distributed_client(tmp_path):
    """dask.diagnostics.ProgressBar is silent under a Client; the build's bar must not be."""
    res = subprocess.run(
        [
            LENSARRAY,
            "build",
            "--out",
            str(tmp_path / "p.zarr"),
            "--pairs",
            "16",
            "--shard-pairs",
            "8",
            "--chunk-pairs",
            "4",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "dashboard" in res.stderr and "2/2" in res.stderr, res.stderr


def test_concurrent_cube_and_null_twin_on_one_scheduler_both_complete(tmp_path, reference):
    """Same seed, one real scheduler, at once: task keys carry (destination, configuration), so
    neither build is handed the other's results (before: the second wrote 0 of its shards)."""
    procs = DaskProcesses(2, tmp_path)
    try:
        outs = {"cube": tmp_path / "cube.zarr", "null": tmp_path / "null.zarr"}
        runs = {
            k: subprocess.Popen(
                _cli(str(o), "--scheduler", procs.address, *(["--null"] if k == "null" else [])),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k, o in outs.items()
        }
        for k, p in runs.items():
            err = p.communicate(timeout=600)[1]
            assert p.returncode == 0, (k, err)
            assert f"wrote {N // SHARD} shards" in err, (k, err)
    finally:
        procs.close()
    for o in outs.values():
        assert completed_shards(open_group(str(o), mode="r")).all()
    _assert_same(str(outs["cube"]), reference)
    cube, null = open_cube(str(outs["cube"])), open_cube(str(outs["null"]))
    assert float(np.abs(null["arc"]).max()) == 0.0 and float(np.abs(cube["arc"]).max()) > 0
    for k in ("host", "invvar", "maskbits", "theta_e", "split"):
        np.testing.assert_array_equal(null[k].values, cube[k].values, err_msg=k)


def test_a_second_writer_on_a_store_being_written_is_refused(tmp_path):
    out = tmp_path / "busy.zarr"
    first = subprocess.Popen(
        _cli(str(out), "--workers", "0", "--pairs", "256"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    t0 = time.time()
    while not (out / "lensarray.lock").exists() and time.time() - t0 < 120 and first.poll() is None:
        time.sleep(0.05)
    assert first.poll() is None, "the first build must still be writing"
    # all three at once, while the first writes
    others = {
        tuple(extra): subprocess.Popen(
            _cli(str(out), "--workers", "0", "--pairs", "256", *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in (["--resume"], ["--overwrite"], [])
    }
    for extra, p in others.items():
        err = p.communicate(timeout=300)[1]
        assert p.returncode == 2, (extra, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "being written" in lines[0] and f"pid {first.pid}" in lines[0], (extra, lines)
    assert first.poll() is None, "the refusals must have come while the first build was writing"
    assert first.wait(900) == 0, first.stderr.read()
    assert completed_shards(open_group(str(out), mode="r")).all()
