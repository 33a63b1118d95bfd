"""Store machinery: template layout, shard writes, done markers, overwrite refusal, resume.

The renderer is replaced by a cheap deterministic function of the pair id so these tests check
the storage logic alone; the physics is tested in test_physics_* and end to end in
test_pipeline.py.
"""

import json

import numpy as np
import pytest
from conftest import damaged_copy, small_config

from lensarray import pipeline
from lensarray.cube import VARIABLES, CubeSchemaError, open_cube
from lensarray.store import DONE_VAR, StoreExistsError, completed_shards, open_group, shard_bounds


def fake_render(pair_ids, cfg, plan=None):
    ids = np.asarray(pair_ids)
    n, nb, s = ids.size, len(cfg.run.bands), cfg.run.size
    out = {}
    for name, spec in VARIABLES.items():
        shape = {"pair": n, "band": nb, "y": s, "x": s}
        shp = tuple(shape[d] for d in spec.dims)
        base = ids.reshape((n,) + (1,) * (len(shp) - 1)).astype(np.float64)
        if spec.dtype.startswith("<U"):
            out[name] = np.array([f"b{i:07d}" for i in ids])
        else:
            out[name] = np.broadcast_to(base * 3 + 1, shp).astype(spec.dtype)
    out["arc"][:, :, :4] = 0  # some all-zero content must still count as written
    return out


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(pipeline, "render_pairs", fake_render)
    monkeypatch.setattr(pipeline, "plan_build", lambda cfg, **kw: pipeline.BuildPlan(config_json=cfg.to_json()))


def cfg_of(n=50, shard=16, chunk=4, **over):
    return small_config(n, shard=shard, chunk=chunk, size=16, **over)


def test_shard_bounds_cover_all_pairs_once():
    b = shard_bounds(50, 16)
    assert b == [(0, 16), (16, 32), (32, 48), (48, 50)]


def test_layout_sharded_with_checksums(tmp_path, fake):
    url = str(tmp_path / "c.zarr")
    pipeline.build(cfg_of(), url, progress=False)
    meta = json.loads((tmp_path / "c.zarr" / "host" / "zarr.json").read_text())
    shard = meta["codecs"][0]
    assert shard["name"] == "sharding_indexed"
    assert meta["chunk_grid"]["configuration"]["chunk_shape"][0] == 16
    assert shard["configuration"]["chunk_shape"][0] == 4
    names = [c["name"] for c in shard["configuration"]["codecs"]]
    assert "blosc" in names and "crc32c" in names  # store.IMAGE_CODECS: lz4 + bit shuffle for host
    ds = open_cube(url)
    assert ds["host"].chunks[0][0] == 16  # opened one dask chunk per shard
    np.testing.assert_array_equal(ds["host"].values[:, 0, 0, 0], np.arange(50) * 3 + 1)
    assert ds.attrs["schema_version"] == 1 and json.loads(ds.attrs["config"])["run"]["n_pairs"] == 50
    assert completed_shards(open_group(url)).all()


def test_existing_store_is_refused_and_untouched(tmp_path, fake):
    url = str(tmp_path / "c.zarr")
    pipeline.build(cfg_of(), url, progress=False)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "c.zarr").rglob("*") if p.is_file()}
    with pytest.raises(StoreExistsError, match="--overwrite"):
        pipeline.build(cfg_of(), url, progress=False)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "c.zarr").rglob("*") if p.is_file()}
    assert before == after
    pipeline.build(cfg_of(n=20), url, progress=False, overwrite=True)
    assert open_cube(url).sizes["pair"] == 20


def test_resume_writes_only_missing_shards(tmp_path, fake):
    url = str(tmp_path / "c.zarr")
    ref = str(tmp_path / "ref.zarr")
    pipeline.build(cfg_of(), ref, progress=False)
    written = []

    def interrupt_after_two(i):  # the build is interrupted once two shards have landed
        written.append(i)
        if len(written) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.build(cfg_of(), url, progress=False, on_shard_done=interrupt_after_two)
    assert completed_shards(open_group(url)).sum() == 2
    res = pipeline.build(cfg_of(), url, progress=False, resume=True)
    assert res.shards_written == 2  # 4 shards, 2 were done
    a, b = open_cube(url), open_cube(ref)
    for name in VARIABLES:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_resume_refuses_a_different_configuration(tmp_path, fake):
    url = str(tmp_path / "c.zarr")
    pipeline.build(cfg_of(), url, progress=False)
    with pytest.raises(Exception, match="run.seed"):
        pipeline.build(cfg_of(**{"run.seed": 8}), url, progress=False, resume=True)


def test_open_cube_errors(tmp_path):
    with pytest.raises(CubeSchemaError, match="not a lensarray cube"):
        open_cube(str(tmp_path / "missing.zarr"))
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3).attrs["hello"] = 1
    with pytest.raises(CubeSchemaError, match="schema_version"):
        open_cube(str(tmp_path / "other.zarr"))


def test_newer_schema_is_refused(tmp_path, fake):
    import zarr

    url = str(tmp_path / "c.zarr")
    pipeline.build(cfg_of(n=8, shard=8), url, progress=False)
    zarr.open_group(url, mode="r+", zarr_format=3).attrs["schema_version"] = 99
    with pytest.raises(CubeSchemaError, match="upgrade lensarray"):
        open_cube(url)


def test_done_marker_is_not_chunk_existence(tmp_path, fake):
    url = str(tmp_path / "c.zarr")
    pipeline.build(cfg_of(n=16, shard=8), url, progress=False)
    g = open_group(url)
    g[DONE_VAR][1] = 0  # data present, marker absent: must count as not done
    assert completed_shards(g).tolist() == [True, False]


# --------------------------------------------------------------------------------------
# nothing of the user's is ever deleted (issue #13.1)
# --------------------------------------------------------------------------------------
def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _user_folder(tmp_path):
    d = tmp_path / "thesis"
    (d / "sub").mkdir(parents=True)
    (d / "thesis.tex").write_text("\\documentclass{article}")
    (d / "sub" / "fig.png").write_bytes(b"\x89PNG....")
    return d


def _host_cube(tmp_path):
    from test_lazy_cube import _host_files

    from lensarray.hosts.cutouts import ingest

    src = tmp_path / "fits"
    src.mkdir()
    out = tmp_path / "hosts.zarr"
    ingest(_host_files(src, n=2), str(out), size=16)
    return out


@pytest.mark.parametrize(
    "occupant", ["folder with user files", "plain file", "host cube", "foreign zarr", "cube with a user file inside"]
)
def test_overwrite_never_removes_what_lensarray_did_not_write(tmp_path, fake, occupant, capsys):
    from lensarray.cli import main

    if occupant == "folder with user files":
        target = _user_folder(tmp_path)
    elif occupant == "plain file":
        target = tmp_path / "notes.txt"
        target.write_text("my notes")
    elif occupant == "host cube":
        target = _host_cube(tmp_path)
    elif occupant == "foreign zarr":
        import zarr

        target = tmp_path / "other.zarr"
        zarr.open_group(str(target), mode="w", zarr_format=3).create_array("data", shape=(4,), dtype="f4")[:] = 1.0
    else:
        target = tmp_path / "c.zarr"
        pipeline.build(cfg_of(n=16), str(target))
        (target / "arc" / "README.txt").write_text("my annotations")
    before = _tree(target) if target.is_dir() else target.read_bytes()
    with pytest.raises(StoreExistsError, match="refusing to remove|is a file"):
        pipeline.build(cfg_of(n=16), str(target), overwrite=True)
    after = _tree(target) if target.is_dir() else target.read_bytes()
    assert after == before
    # the CLI: one line, exit 2
    assert main(["build", "--out", str(target), "--pairs", "8", "--workers", "0", "--overwrite", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0], err
    assert (_tree(target) if target.is_dir() else target.read_bytes()) == before


def test_overwrite_replaces_a_lensarray_cube_and_checks_inputs_first(tmp_path):
    url = tmp_path / "c.zarr"
    pipeline.build(cfg_of(n=16), str(url))
    before = _tree(url)
    bad = cfg_of(n=16, **{"hosts.source": str(tmp_path / "no-such-hosts.zarr")})
    with pytest.raises(Exception, match="no-such-hosts"):
        pipeline.build(bad, str(url), overwrite=True)
    assert _tree(url) == before  # a bad input is refused before the existing cube is touched
    pipeline.build(cfg_of(n=24), str(url), overwrite=True)
    assert open_cube(str(url)).sizes["pair"] == 24


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--out", ""], "--out ''"),
        (["--out", "{d}/absent/c.zarr"], "does not exist"),
        (["--out", "{d}/file.txt/c.zarr"], "is a file"),
        (["--out", "{d}/nothing.zarr", "--resume"], "nothing to resume"),
        (["--out", "{d}/thesis", "--resume"], "not a lensarray cube"),
    ],
)
def test_destination_errors_are_one_line_and_touch_nothing(tmp_path, capsys, argv, needle):
    from lensarray.cli import main

    (tmp_path / "file.txt").write_text("x")
    _user_folder(tmp_path)
    before = _tree(tmp_path)
    argv = [a.format(d=tmp_path) for a in argv]
    assert main(["build", *argv, "--pairs", "8", "--workers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert _tree(tmp_path) == before and not (tmp_path / "nothing.zarr").exists()


def test_resume_of_a_missing_cube_is_refused_before_planning(tmp_path, monkeypatch):
    def no_planning(*args, **kwargs):
        raise AssertionError("planned a build that was going to be refused")

    monkeypatch.setattr(pipeline, "plan_build", no_planning)
    with pytest.raises(StoreExistsError, match="nothing to resume"):
        pipeline.build(cfg_of(n=8), str(tmp_path / "nothing.zarr"), resume=True)
    assert not (tmp_path / "nothing.zarr").exists()


# --------------------------------------------------------------------------------------
# one writer at a time (issue #13.2)
# --------------------------------------------------------------------------------------
def _lock_file(url, **rec):
    import os
    import socket
    import time

    base = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": time.time(),
        "time": time.time(),
        "purpose": "build",
        "nonce": "someone-else",
    }
    base.update(rec)
    (url / "lensarray.lock").write_text(json.dumps(base))


def test_a_store_being_written_is_refused_and_a_stale_lock_taken_over(tmp_path, fake):
    import subprocess
    import time

    from lensarray.errors import StoreLockedError

    url = tmp_path / "c.zarr"
    pipeline.build(cfg_of(), str(url))
    g = open_group(str(url))
    g[DONE_VAR][1] = 0
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        _lock_file(url, pid=sleeper.pid)  # a live writer on this host
        with pytest.raises(StoreLockedError, match=f"pid {sleeper.pid}"):
            pipeline.build(cfg_of(), str(url), resume=True)
        with pytest.raises(StoreLockedError):
            pipeline.build(cfg_of(), str(url), overwrite=True)
        assert not completed_shards(g)[1] and (url / "lensarray.lock").exists()
        _lock_file(url, host="another-host", pid=1)  # fresh, elsewhere: cannot be checked, so refused
        with pytest.raises(StoreLockedError, match="another-host"):
            pipeline.build(cfg_of(), str(url), resume=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    _lock_file(url, pid=sleeper.pid)  # its owner is gone: stale at once
    assert pipeline.build(cfg_of(), str(url), resume=True).shards_written == 1
    assert not (url / "lensarray.lock").exists()  # released
    g[DONE_VAR][2] = 0
    _lock_file(url, host="another-host", time=time.time() - 3600)  # not refreshed for an hour
    assert pipeline.build(cfg_of(), str(url), resume=True).shards_written == 1


def test_the_lock_is_refreshed_while_writing(tmp_path, fake, monkeypatch):
    import time

    from lensarray import store

    monkeypatch.setattr(store, "LOCK_REFRESH_SECONDS", 0.05)
    url = tmp_path / "c.zarr"
    records, waits = [], []

    def read():
        return json.loads((url / "lensarray.lock").read_text())

    def slow(i):
        # wait (up to 10 s, a loaded CI machine can stall a thread) for the lock to be refreshed
        # while the build is paused inside a shard callback: the refresh comes from its own thread
        first, t0 = read(), time.monotonic()
        while read()["time"] == first["time"] and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        records.extend([first, read()])
        waits.append(time.monotonic() - t0)

    pipeline.build(cfg_of(), str(url), on_shard_done=slow)
    assert len(waits) == 4 and max(waits) < 10, waits
    times = [r["time"] for r in records]
    assert all(b >= a for a, b in zip(times, times[1:], strict=False)), times
    assert all(after > first for first, after in zip(times[::2], times[1::2], strict=False)), times
    assert len({(r["nonce"], r["since"]) for r in records}) == 1  # one holder, refreshed, never re-taken
    assert not (url / "lensarray.lock").exists()


def test_ingest_overwrite_replaces_a_host_cube_but_never_a_lens_cube(tmp_path, fake):
    from test_lazy_cube import _host_files

    from lensarray.hosts.cutouts import HostCube, ingest

    src = tmp_path / "fits"
    src.mkdir()
    files = _host_files(src, n=3)
    hosts = tmp_path / "hosts.zarr"
    ingest(files[:2], str(hosts), size=16)
    ingest(files, str(hosts), size=16, overwrite=True)
    assert HostCube(str(hosts)).n_hosts == 3
    cube = tmp_path / "c.zarr"
    pipeline.build(cfg_of(n=8), str(cube))
    before = _tree(cube)
    with pytest.raises(StoreExistsError, match="lensarray cube, not a lensarray host cube"):
        ingest(files, str(cube), size=16, overwrite=True)
    assert _tree(cube) == before


def _files(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("quantize", [False, True])
def test_shard_writer_stores_zarrs_own_bytes(tmp_path, quantize):
    """The writer encodes whole objects itself (zarr's codecs, synchronously): every file must be
    byte for byte what zarr's own ``array[a:b] = data`` writes, for a short last shard, an
    all-fill shard (no object) and quantised planes; and it must read back and verify."""
    from lensarray.quantize import apply_quantization
    from lensarray.store import check_shards, create_store, cube_attrs, write_shard

    over = {"quantize.host": True, "quantize.arc_keepbits": 12} if quantize else {}
    cfg = small_config(40, shard=16, chunk=8, size=16, **over)
    arrays = pipeline.render_pairs(np.arange(40), cfg)
    arrays["maskbits"][16:32] = 0  # shard 1: maskbits all fill -> zarr stores no object
    arrays["maskbits"][0, 0, 0] = 1  # shard 0: some content
    arrays["theta_e"][16:32] = np.nan  # and a per-pair float variable all fill (NaN)
    roots = {}
    for kind in ("writer", "zarr"):
        roots[kind] = tmp_path / f"{kind}.zarr"
        create_store(
            str(roots[kind]),
            n_pairs=40,
            bands=list(cfg.run.bands),
            size=16,
            chunk_pairs=8,
            shard_pairs=16,
            attrs=cube_attrs(cfg),
        )
        g = open_group(str(roots[kind]))
        for i, (a, b) in enumerate(shard_bounds(40, 16)):
            part = {k: v[a:b] for k, v in arrays.items()}
            if kind == "writer":
                write_shard(g, i, a, b, part)
            else:
                stored = apply_quantization(part, g.attrs.get("quantization", ""))
                for name in VARIABLES:
                    g[name][a:b] = np.asarray(stored[name]).astype(VARIABLES[name].dtype)
    mine, theirs = _files(roots["writer"]), _files(roots["zarr"])
    data = {k for k in theirs if k.split("/")[0] in VARIABLES}
    assert data and {k for k in mine if k.split("/")[0] in VARIABLES} == data
    assert not [k for k in data if mine[k] != theirs[k]]
    assert "maskbits/c/1/0/0" not in mine and "maskbits/c/0/0/0" in mine
    g = open_group(str(roots["writer"]), mode="r")
    assert completed_shards(g).all() and check_shards(g) == {}
    assert np.array_equal(g["host"][:], apply_quantization(arrays, g.attrs["quantization"])["host"])


def _shard_payload(token, i, a, b, name, values):
    head = f"{token}:{i}:{a}:{b}:{name}:{values.shape}".encode()
    return head + np.ascontiguousarray(values.astype(VARIABLES[name].dtype, copy=False)).tobytes()


@pytest.mark.parametrize("legacy", [False, True])
def test_shard_digests_are_crc32c_and_legacy_crc32_cubes_still_verify(tmp_path, legacy):
    """New cubes record ``shard_digest_algorithm = crc32c`` and store crc32c digests; a cube made
    before the attr (none recorded) gets and is checked against zlib CRC-32 digests. The digests
    equal an independent computation (the ``crc32c`` package, zlib), both kinds verify, and the
    attr is what check_shards follows (a legacy cube relabelled crc32c fails every variable)."""
    import zlib

    import crc32c

    from lensarray.store import DIGEST_ATTR, DIGEST_VAR, check_shards, create_store, cube_attrs, cube_token, write_shard

    cfg = cfg_of(40, shard=16, chunk=8)
    arrays = fake_render(np.arange(40), cfg)
    url = str(tmp_path / "c.zarr")
    attrs = cube_attrs(cfg)
    assert attrs[DIGEST_ATTR] == "crc32c"
    if legacy:
        del attrs[DIGEST_ATTR]
    create_store(url, n_pairs=40, bands=list(cfg.run.bands), size=16, chunk_pairs=8, shard_pairs=16, attrs=attrs)
    g = open_group(url)
    assert (DIGEST_ATTR in g.attrs) is not legacy
    for i, (a, b) in enumerate(shard_bounds(40, 16)):
        write_shard(g, i, a, b, {k: v[a:b] for k, v in arrays.items()})
    token = cube_token(dict(g.attrs))
    digests = np.asarray(g[DIGEST_VAR][:])
    checksum = (lambda data: zlib.crc32(data)) if legacy else crc32c.crc32c
    for i, (a, b) in enumerate(shard_bounds(40, 16)):
        for j, name in enumerate(VARIABLES):
            assert int(digests[i, j]) == checksum(_shard_payload(token, i, a, b, name, arrays[name][a:b])), (i, name)
    assert check_shards(open_group(url, mode="r")) == {}
    g.attrs[DIGEST_ATTR] = "crc32" if not legacy else "crc32c"  # the wrong algorithm for these digests
    bad = check_shards(open_group(url, mode="r"))
    assert sorted(bad) == [0, 1, 2] and all(len(p) == len(VARIABLES) for p in bad.values())
    g.attrs[DIGEST_ATTR] = "md5"
    with pytest.raises(CubeSchemaError, match=f"{DIGEST_ATTR} = 'md5': allowed one of"):
        check_shards(open_group(url, mode="r"))


def test_build_renders_and_writes_each_shard_in_one_task(tmp_path, fake, monkeypatch):
    """``build`` hands the writer its kernel: one task per shard renders and writes it (no
    per-variable getitem tasks), the kernel's values land unchanged and the cube verifies; the
    same cube written from the lazy dataset's blocks (the path ``ds.lensarray.to_zarr`` takes)
    has the same bytes."""
    import dask

    from lensarray import store
    from lensarray.store import check_shards, write_cube

    tasks, real = [], store._render_and_write_shard_task

    def counted(*args, **kwargs):
        tasks.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "_render_and_write_shard_task", counted)
    cfg = cfg_of(50, shard=16, chunk=4)
    url, via_blocks = str(tmp_path / "c.zarr"), str(tmp_path / "blocks.zarr")
    pipeline.build(cfg, url, progress=False)
    assert sorted(tasks) == [0, 1, 2, 3]
    plan = pipeline.plan_build(cfg)
    writes = store._shard_writes(
        pipeline._lazy_from_plan(cfg, plan), url, None, shard_bounds(50, 16), [0, 1, 2, 3], "t", {}, render=print
    )
    assert all(len(dict(w.__dask_graph__())) == 1 for w in writes)  # one task per shard, nothing else
    with dask.config.set(scheduler="synchronous"):
        write_cube(pipeline.lazy_cube(cfg), via_blocks)
    assert len(tasks) == 4  # the lazy dataset's own blocks, not the fused task
    a, b = open_cube(url), open_cube(via_blocks)
    want = fake_render(np.arange(50), cfg)
    for name in VARIABLES:
        np.testing.assert_array_equal(a[name].values, want[name], err_msg=name)
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert check_shards(open_group(url, mode="r")) == {}


def test_open_cube_reads_through_the_sync_pipeline_the_same_values_and_checksums(small_cube, tmp_path):
    """open_cube's arrays decode through zarr's FusedCodecPipeline (store.READ_PIPELINE): every
    variable, whole and as a partial selection across shards, equals zarr's default
    (BatchedCodecPipeline) read of the same store, and a flipped byte in an inner chunk still
    fails its crc32c on read."""

    import zarr

    from lensarray.diagnostics._compute import store_source
    from lensarray.store import READ_PIPELINE

    ds = open_cube(small_cube)
    backend = store_source(ds["host"].data)
    while not hasattr(backend, "_async_array"):  # xarray's adapters around the zarr.Array
        backend = backend.array if hasattr(backend, "array") else backend._array
    assert type(backend._async_array.codec_pipeline).__name__ == READ_PIPELINE.rsplit(".", 1)[1]
    plain = zarr.open_group(small_cube, mode="r")
    assert type(plain["host"]._async_array.codec_pipeline).__name__ == "BatchedCodecPipeline"
    for name in ds.data_vars:
        np.testing.assert_array_equal(ds[name].values, plain[name][...])
    sel = np.array([1, 2, 9, 17, 30])  # within and across shards of 8, inner chunks of 4
    for name in ("host", "arc", "invvar", "maskbits", "theta_e"):
        np.testing.assert_array_equal(ds[name].isel(pair=sel).values, plain[name].get_orthogonal_selection(sel))
    bad = damaged_copy(small_cube, tmp_path / "bad.zarr", "host", shard=1, offset=40)
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        np.asarray(open_cube(str(bad))["host"].isel(pair=slice(8, 16)))
