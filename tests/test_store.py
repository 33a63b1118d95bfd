"""Store machinery: template layout, shard writes, done markers, overwrite refusal, resume.

The renderer is replaced by a cheap deterministic function of the pair id so these tests check
the storage logic alone; the physics is tested in test_physics_* and end to end in
test_pipeline.py.
"""

import json

import numpy as np
import pytest

from lensarray import pipeline
from lensarray.config import RunConfig
from lensarray.cube import VARIABLES, CubeSchemaError, open_cube
from lensarray.store import (DONE_VAR, StoreExistsError, completed_shards, open_group, shard_bounds)


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
    monkeypatch.setattr(pipeline, "plan_build",
                        lambda cfg, **kw: pipeline.BuildPlan(config_json=cfg.to_json()))


def cfg_of(n=50, shard=16, chunk=4, **over):
    return RunConfig().replace(**{"run.n_pairs": n, "run.shard_pairs": shard, "run.chunk_pairs": chunk,
                                  "cluster.kind": "none", "run.size": 16, **over}).validate()


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
    # interrupt after two shards: the third raises mid-build
    orig = pipeline._write_one_shard

    def flaky(url_, so, i, a, b, plan):
        if len(written) == 2:
            raise KeyboardInterrupt
        return orig(url_, so, i, a, b, plan)

    pipeline._write_one_shard = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            pipeline.build(cfg_of(), url, progress=False, on_shard_done=written.append)
    finally:
        pipeline._write_one_shard = orig
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
        pipeline.build(cfg_of(**{"run.seed": 7}), url, progress=False, resume=True)


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
