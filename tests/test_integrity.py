"""Completeness and integrity are part of the data (issue #13.3), with real files and processes:
unbuilt pairs are never served (split fill -1, open_cube refuses, the loader and commands never see
them), each shard's digest binds its content to its index and cube, so verify catches deleted,
copied-over, stale and truncated chunks, and ``build --resume --repair`` rewrites exactly those."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _servers import sigkill_after_shards

from lensarray import pipeline
from lensarray.cli import main
from lensarray.commands.verify import verify_store
from lensarray.cube import VARIABLES, open_cube
from lensarray.errors import IncompleteCubeError
from lensarray.store import completed_shards, open_group

LENSARRAY = str(Path(sys.executable).parent / "lensarray")
N, SHARD, CHUNK = 32, 8, 4


@pytest.fixture(scope="module")
def cfg(make_cfg):
    """``cfg(**over)``: the cube of these tests (N pairs in shards of SHARD, 32-pixel stamps)."""
    return lambda **over: make_cfg(N, shard=SHARD, chunk=CHUNK, size=32, seed=None, **over)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cfg):
    url = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    pipeline.build(cfg(), url)
    return url


def _copy(reference, tmp_path, name="c.zarr") -> Path:
    dst = tmp_path / name
    shutil.copytree(reference, dst)
    return dst


def _assert_same(a, b):
    da, db = open_cube(str(a)), open_cube(str(b))
    for k in VARIABLES:
        np.testing.assert_array_equal(da[k].values, db[k].values, err_msg=k)


def _half_built(tmp_path, cfg) -> tuple[str, int]:
    """A cube whose build was interrupted after one shard; (url, index of the built shard)."""
    url = str(tmp_path / "half.zarr")

    def stop_after_one(i):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.build(cfg(), url, on_shard_done=stop_after_one)
    done = completed_shards(open_group(url, mode="r"))
    assert done.sum() == 1
    return url, int(np.flatnonzero(done)[0])


def test_unbuilt_pairs_are_never_served(tmp_path, capsys, cfg):
    from lensarray.training import batches

    url, k = _half_built(tmp_path, cfg)
    built = np.arange(k * SHARD, (k + 1) * SHARD)
    unbuilt = np.setdiff1d(np.arange(N), built)
    raw = xr.open_zarr(url, consolidated=False)
    assert (raw["split"].values[unbuilt] == -1).all()  # unwritten pairs read "unbuilt", not train (0)
    assert (raw["region"].values[unbuilt] == -1).all() and (raw["host_id"].values[unbuilt] == -1).all()
    missing = [i for i in range(4) if i != k]
    with pytest.raises(IncompleteCubeError, match=r"3 of 4 shards not built \(shards .*\).*--resume --out"):
        open_cube(url)
    part = open_cube(url, allow_incomplete=True)
    assert part["pair"].values.tolist() == built.tolist() and part.attrs["unbuilt_shards"] == str(missing)
    assert np.isfinite(part["theta_e"].values).all()
    with pytest.raises(IncompleteCubeError):
        next(batches(url, split=None))
    got = [b for b in batches(part, split=None, batch_size=4, augment=())]
    assert sorted(np.concatenate([b["pair"] for b in got]).tolist()) == sorted(2 * built.tolist())
    assert all(np.isfinite(b["images"]).all() for b in got)
    # the commands refuse in one line (exit 2); none computes a result from fill values
    for argv in (
        ["diagnose", url, "--out", str(tmp_path / "d"), "--no-progress"],
        ["preview", url, "--out", str(tmp_path / "p.png")],
        ["evaluate", url, "--baseline", "--out", str(tmp_path / "e")],
        ["inspect", url],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "incomplete" in err[0] and "--resume" in err[0], (argv, err)
    assert not (tmp_path / "d" / "report.json").exists() and not (tmp_path / "p.png").exists()
    # verify names the unbuilt shards (exit 1), resume finishes it
    assert main(["verify", url, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert all(f"shard {i} (pairs {8 * i}-{8 * i + 7}): not complete" in err for i in missing)
    res = pipeline.build(cfg(), url, resume=True)
    assert res.shards_written == 3 and open_cube(url).sizes["pair"] == N


def _delete(path: Path):
    path.unlink()


def _truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


FAULTS = {
    # name: (mutation of the copied cube, shards it damages, variable named in the report)
    "deleted theta_e chunk": (lambda c, r: _delete(c / "theta_e" / "c" / "1"), [1], "theta_e"),
    "deleted split chunk": (lambda c, r: _delete(c / "split" / "c" / "2"), [2], "split"),
    "deleted arc shard file": (lambda c, r: _delete(c / "arc" / "c" / "3" / "0" / "0" / "0"), [3], "arc"),
    "arc shard 0 copied over shard 1": (
        lambda c, r: shutil.copyfile(c / "arc" / "c" / "0" / "0" / "0" / "0", c / "arc" / "c" / "1" / "0" / "0" / "0"),
        [1],
        "arc",
    ),
    "shard 2 copied over shard 0 with its digest": (
        lambda c, r: (
            [shutil.copyfile(c / v / "c" / "2", c / v / "c" / "0") for v in ("theta_e", "src_x")]
            + [shutil.copyfile(c / "shard_digest" / "c" / "2" / "0", c / "shard_digest" / "c" / "0" / "0")]
        ),
        [0],
        "theta_e",
    ),
    "stale shard from another cube (data, digest, marker)": (
        lambda c, r: (
            [shutil.copyfile(r / v / "c" / "1", c / v / "c" / "1") for v in ("theta_e", "mu")]
            + [shutil.copyfile(r / "shard_digest" / "c" / "1" / "0", c / "shard_digest" / "c" / "1" / "0")]
        ),
        [1],
        "theta_e",
    ),
    "truncated host shard file": (lambda c, r: _truncate(c / "host" / "c" / "2" / "0" / "0" / "0"), [2], "host"),
    "truncated per-pair chunk": (lambda c, r: _truncate(c / "arc_snr" / "c" / "0"), [0], "arc_snr"),
}


@pytest.fixture(scope="module")
def other_cube(tmp_path_factory, cfg):
    """The same layout, another seed: its shards are valid on their own, stale in the reference."""
    url = tmp_path_factory.mktemp("other") / "other.zarr"
    pipeline.build(cfg(**{"run.seed": 99}), str(url))
    return url


@pytest.mark.parametrize("fault", list(FAULTS))
def test_verify_catches_and_repair_rewrites_exactly_the_bad_shards(fault, reference, other_cube, tmp_path, cfg):
    mutate, shards, var = FAULTS[fault]
    cube = _copy(reference, tmp_path)
    mutate(cube, other_cube)
    problems = verify_store(str(cube), sample=0)
    assert problems, fault
    named = sorted({int(p.split()[1]) for p in problems})
    assert named == shards and any(var in p for p in problems), (fault, problems)
    untouched = {p: p.stat().st_mtime_ns for p in (cube / "theta_e" / "c").iterdir() if int(p.name) not in shards}
    res = pipeline.build(cfg(), str(cube), resume=True, repair=True)
    assert res.repaired == shards and res.shards_written == len(shards), fault
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # good shards were not rewritten
    assert verify_store(str(cube), sample=4) == []
    _assert_same(cube, reference)


def test_repair_without_damage_rewrites_nothing(reference, tmp_path, cfg):
    cube = _copy(reference, tmp_path)
    res = pipeline.build(cfg(), str(cube), resume=True, repair=True)
    assert res.repaired == [] and res.shards_written == 0


def _cli(out, *extra):
    return [
        LENSARRAY,
        "build",
        "--out",
        str(out),
        "--pairs",
        "48",
        "--shard-pairs",
        "8",
        "--chunk-pairs",
        "4",
        "--workers",
        "0",
        "--no-progress",
        *extra,
    ]


def test_sigkilled_build_is_refused_by_open_then_verify_resume_repair(tmp_path, make_cfg):
    out = tmp_path / "k.zarr"
    proc = subprocess.Popen(_cli(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    done = sigkill_after_shards(proc, out)
    assert 0 < done.sum() < done.size
    with pytest.raises(IncompleteCubeError, match="not built"):
        open_cube(str(out))
    res = subprocess.run([LENSARRAY, "verify", str(out), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "not complete" in res.stderr
    # the killed writer's lock names a dead pid on this host: taken over at once; no flags = stored config
    res = subprocess.run(
        [LENSARRAY, "build", "--out", str(out), "--resume", "--repair", "--workers", "0", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert f"wrote {done.size - int(done.sum())} shards" in res.stderr
    res = subprocess.run(
        [LENSARRAY, "verify", str(out), "--no-progress", "--sample", "3"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    ref = tmp_path / "ref.zarr"
    pipeline.build(make_cfg(48, shard=8, chunk=4, size=None, seed=None), str(ref))  # as _cli builds it
    _assert_same(out, ref)


def test_a_store_without_completion_record_opens_with_a_warning(reference, tmp_path, caplog):
    """Written by plain xarray (a toy or user cube): nothing to trust or refuse; said, opened."""
    import logging

    url = str(tmp_path / "plain.zarr")
    open_cube(reference).to_zarr(url, consolidated=False)
    with caplog.at_level(logging.WARNING, logger="lensarray.store"):
        ds = open_cube(url)
    assert ds.sizes["pair"] == N and "no shard completion record" in caplog.text
