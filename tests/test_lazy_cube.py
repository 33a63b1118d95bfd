"""The lazy cube: nothing renders until computed, a selection renders only its blocks, and for any
chunking (and with real ingested hosts) its values equal the built cube's bit for bit."""

import warnings

import dask
import numpy as np
import pytest
import xarray as xr

import lensarray
from lensarray import pipeline
from lensarray.config import RunConfig
from lensarray.cube import VARIABLES, open_cube


def _cfg(n=40, **over):
    return (
        RunConfig()
        .replace(
            **{
                "run.n_pairs": n,
                "run.shard_pairs": 16,
                "run.chunk_pairs": 8,
                "run.size": 32,
                "cluster.kind": "none",
                "run.seed": 11,
                **over,
            }
        )
        .validate()
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("lazy") / "ref.zarr")
    lensarray.build(_cfg(), url)
    return url


@pytest.fixture
def render_calls(monkeypatch):
    calls = []
    orig = pipeline.render_pairs

    def counting(pair_ids, cfg, plan=None):
        calls.append(np.asarray(pair_ids).tolist())
        return orig(pair_ids, cfg, plan)

    monkeypatch.setattr(pipeline, "render_pairs", counting)
    return calls


def _assert_same(a: xr.Dataset, b: xr.Dataset):
    for k in VARIABLES:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)


@pytest.mark.parametrize("chunk_pairs", [7, 16])
def test_lazy_equals_built_for_two_chunkings(built, chunk_pairs):
    lazy = lensarray.lazy_cube(_cfg(), chunk_pairs=chunk_pairs)
    assert lazy["arc"].chunks[0][0] == chunk_pairs and all(
        isinstance(lazy[k].data, dask.array.Array) for k in VARIABLES
    )
    ds = open_cube(built)
    with dask.config.set(scheduler="synchronous"):
        _assert_same(lazy, ds)
    for k in ("config", "split_plan", "schema_version", "seed", "core_mask_policy"):
        assert lazy.attrs[k] == ds.attrs[k], k


def test_nothing_renders_until_computed_and_a_selection_renders_only_its_blocks(render_calls):
    lazy = lensarray.lazy_cube(_cfg(), chunk_pairs=8)  # blocks [0,8) [8,16) ... [32,40)
    assert render_calls == []  # planning draws no pixels
    pick = [1, 2, 3, 4, 5, 33, 34, 35, 36, 39]  # 10 pairs in blocks 0 and 4
    sub = lazy.isel(pair=pick).compute(scheduler="synchronous")
    assert sorted(c[0] for c in render_calls) == [0, 32] and all(len(c) == 8 for c in render_calls)
    render_calls.clear()
    whole = lazy.compute(scheduler="synchronous")
    assert len(render_calls) == 5  # every block once, not once per variable
    _assert_same(sub, whole.isel(pair=pick))


def _host_files(folder, n=12):
    from astropy.io import fits

    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):  # hosts spread over the sky, so region-disjoint splits can be planned
        img = rng.normal(0, 0.004, (3, 40, 40)).astype(np.float32)
        yy, xx = np.mgrid[0:40, 0:40]
        img += (0.4 * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / 9.0)).astype(np.float32)
        h = fits.Header()
        h["BANDS"] = "grz"
        h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
        h["CRVAL1"], h["CRVAL2"] = float(30 * i % 360), float(-30 + 5 * i)
        h["CRPIX1"] = h["CRPIX2"] = 20.5
        h["CD1_1"], h["CD2_2"], h["CD1_2"], h["CD2_1"] = -0.262 / 3600, 0.262 / 3600, 0.0, 0.0
        path = folder / f"h{i:02d}.fits"
        fits.PrimaryHDU(img, header=h).writeto(path)
        paths.append(str(path))
    return paths


def test_real_hosts_work_the_same_way(tmp_path):
    from lensarray.hosts.cutouts import HostCube, ingest

    hosts = str(tmp_path / "hosts.zarr")
    rep = ingest(_host_files(tmp_path), hosts, size=32)
    assert len(rep.accepted) == 12
    cfg = _cfg(n=24, **{"run.shard_pairs": 8, "run.chunk_pairs": 4, "hosts.source": hosts})
    url = str(tmp_path / "c.zarr")
    lensarray.build(cfg, url)
    ds = open_cube(url)
    hc = HostCube(hosts)
    with dask.config.set(scheduler="synchronous"):
        for lazy in (
            lensarray.lazy_cube(_cfg(n=24, **{"run.shard_pairs": 8, "run.chunk_pairs": 4}), hosts=hc, chunk_pairs=5),
            lensarray.lazy_cube(cfg, chunk_pairs=8),
        ):
            assert lazy.lensarray.config["hosts"]["source"] == hosts
            _assert_same(lazy, ds)
    # the hosts really are the ingested pixels (not synthetic): each pair's host is one of them
    pix = hc.take(np.arange(hc.n_hosts))["host"]
    for i in range(ds.sizes["pair"]):
        assert any(np.array_equal(ds["host"].values[i], p) for p in pix)


def test_accessor_to_zarr_writes_the_built_cube_and_plain_open_zarr_is_quiet(built, tmp_path):
    lazy = lensarray.lazy_cube(_cfg(), chunk_pairs=12)  # blocks not aligned with 16-pair shards
    url = str(tmp_path / "w.zarr")
    res = lazy.lensarray.to_zarr(url)
    assert res.shards_written == res.n_shards == 3
    _assert_same(open_cube(url), open_cube(built))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "consolidated metadata not found" warning
        plain = xr.open_zarr(url)
    np.testing.assert_array_equal(plain["theta_e"].values, open_cube(built)["theta_e"].values)


def test_a_selection_cannot_be_written_as_a_cube(tmp_path):
    from lensarray.cube import CubeSchemaError

    lazy = lensarray.lazy_cube(_cfg())
    with pytest.raises(CubeSchemaError, match="selection"):
        lazy.isel(pair=slice(0, 10)).lensarray.to_zarr(str(tmp_path / "s.zarr"))
    assert not (tmp_path / "s.zarr").exists()


def test_split_planning_shows_a_bar_only_when_asked(capsys):
    lensarray.lazy_cube(_cfg())
    assert "split planning" not in capsys.readouterr().err  # library default: quiet
    lensarray.lazy_cube(_cfg(), progress=True)
    assert "split planning" in capsys.readouterr().err


def test_store_and_schema_never_import_the_cube_module():
    """The cube <-> store cycle is gone: store (and the schema both use) import no cube, at any level."""
    import ast
    from pathlib import Path

    root = Path(lensarray.__file__).parent
    for name, banned in (("store.py", {"cube"}), ("schema.py", {"cube", "store"})):
        tree = ast.parse((root / name).read_text())
        imported = {a.name.split(".")[-1] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[-1] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.module for a in n.names}
        assert not imported & banned, (name, imported & banned)


def test_pixels_do_not_depend_on_the_blas_thread_count(tmp_path):
    """Float32 GEMM's last bits move with OpenBLAS's thread count on some CPUs (AMD EPYC here):
    the renderer pins BLAS to one thread, so a lazy cube computed in a process with 2 BLAS threads
    equals one computed where ``OPENBLAS_NUM_THREADS=1`` (as on dask workers); the threaded
    scheduler renders in pool threads, where OpenBLAS ignores a thread count."""
    import os
    import subprocess
    import sys

    from threadpoolctl import threadpool_info, threadpool_limits

    script = (
        "import sys, numpy as np, lensarray\n"
        "import json\n"
        "from lensarray.config import config_from_dict\n"
        "cfg = config_from_dict(json.load(open(sys.argv[1]))).validate()\n"
        "np.save(sys.argv[2], lensarray.lazy_cube(cfg).arc.values)\n"
    )
    cfg = (
        RunConfig()
        .replace(**{"run.n_pairs": 16, "run.shard_pairs": 16, "run.chunk_pairs": 8, "cluster.kind": "none"})
        .validate()
    )
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    out = tmp_path / "one_thread.npy"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "cfg.json"), str(out)], env=env, check=True)
    threadpool_limits(limits=2, user_api="blas")  # as a notebook on a 2-core machine has it
    assert any(i["num_threads"] == 2 for i in threadpool_info() if i["user_api"] == "blas")
    with dask.config.set(scheduler="threads"):
        arcs = lensarray.lazy_cube(cfg).arc.values
    np.testing.assert_array_equal(arcs, np.load(out))
