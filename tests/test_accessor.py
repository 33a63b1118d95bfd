"""Accessor operations on built cubes and on lazy (dask-backed, never stored) cubes."""

import json

import numpy as np
import pytest
import xarray as xr

from lensarray.config import RunConfig
from lensarray.cube import open_cube
from lensarray.diagnostics import diagnose, toy_cube
from lensarray.errors import BadInputError
from lensarray.geometry import central_side, central_slice, radius_grid
from lensarray.pipeline import build

N_PAIRS = 48


def _cfg(**over):
    base = {
        "run.n_pairs": N_PAIRS,
        "run.chunk_pairs": 16,
        "run.shard_pairs": 16,
        "cluster.kind": "none",
        "run.seed": 77,
    }
    base.update(over)
    return RunConfig().replace(**base).validate()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("acc")
    out = {}
    for name, over in (
        ("plain", {}),
        (
            "hard5",
            {
                "core_mask.policy": "hard",
                "core_mask.radius": 5.0,
                # mask_core keeps the arcs' brightness: the build
                # that calibrates S/N before the mask
                "brightness.snr_calibrate": "unmasked",
            },
        ),
    ):
        path = str(root / f"{name}.zarr")
        build(_cfg(**over), path, progress=False)
        out[name] = open_cube(path)
    return out


def test_stored_core_flux_frac_equals_the_lazy_one_exactly(built):
    ds = built["plain"]
    lazy = ds.lensarray.core_flux_fraction()
    assert hasattr(lazy.data, "dask") and lazy.dims == ("pair", "band")
    stored = ds["core_flux_frac"].values
    assert np.isfinite(stored).all() and (stored > 0).any()
    np.testing.assert_array_equal(lazy.values, stored)
    np.testing.assert_array_equal(ds.lensarray.arc_snr().values, ds["arc_snr"].values)
    np.testing.assert_array_equal(ds.lensarray.arc_flux().values, ds["arc_flux"].values)
    # another radius is another quantity
    assert not np.array_equal(ds.lensarray.core_flux_fraction(3.0).values, stored)


def test_mask_core_on_a_plain_cube_is_the_cube_built_with_the_policy(built):
    plain, hard = built["plain"], built["hard5"]
    masked = plain.lensarray.mask_core("hard", 5.0)
    assert hasattr(masked["arc"].data, "dask") and hasattr(masked["core_flux_frac"].data, "dask")
    np.testing.assert_array_equal(masked["arc"].values, hard["arc"].values)
    for k in ("arc_flux", "arc_snr", "core_flux_frac"):
        np.testing.assert_array_equal(masked[k].values, hard[k].values, err_msg=k)
    # one format: the accessor records the policy exactly as the build of that policy does
    assert masked.attrs["core_mask_policy"] == hard.attrs["core_mask_policy"]
    assert json.loads(masked.attrs["core_mask_policy"]) == {
        "policy": "hard",
        "radius_px": 5.0,
        "width_px": 1.0,
        "apply_to": "arc",
    }
    assert np.all(masked["arc"].values[..., radius_grid(plain.sizes["x"]) < 5.0] == 0)
    # and so does the toy cube made with a hard core mask
    toy = toy_cube(8, seed=1, chunk_pairs=4, hard_mask=5.0)
    assert toy.attrs["core_mask_policy"] == masked.attrs["core_mask_policy"]
    assert np.all(toy["arc"].values[..., radius_grid(toy.sizes["x"]) < 5.0] == 0)


def test_radius_stamp_and_lens_centres():
    ds = toy_cube(8, seed=1, chunk_pairs=4, size=33)
    ps = float(ds.attrs["pixel_scale"])
    ds["lens_x"] = (("pair",), np.linspace(-0.5, 0.5, 8).astype(np.float32))
    ds["lens_y"] = (("pair",), np.full(8, 0.262, np.float32))
    ds = ds.chunk({"pair": 4})
    r = ds.lensarray.radius()
    assert r.dims == ("y", "x") and r.values[16, 16] == 0 and r.values[16, 26] == 10
    rl = ds.lensarray.radius("lens")
    assert rl.dims == ("pair", "y", "x") and hasattr(rl.data, "dask")
    yy, xx = np.mgrid[0:33, 0:33] - 16
    lx = ds["lens_x"].values.astype(np.float64) / ps
    ly = ds["lens_y"].values.astype(np.float64) / ps
    np.testing.assert_allclose(rl.values, np.hypot(yy[None] - ly[:, None, None], xx[None] - lx[:, None, None]))
    # the one radius grid: geometry.radius_grid with the pairs' centres, block by block
    assert rl.data.chunks[0] == (4, 4)
    np.testing.assert_array_equal(rl.values, radius_grid(33, (lx, ly)))
    np.testing.assert_array_equal(rl["x"].values, ds["x"].values)
    with pytest.raises(BadInputError, match="center = 'host': allowed 'stamp' or 'lens'"):
        ds.lensarray.radius("host")


def test_central_square_holds_disc_box_and_ring():
    side = central_side(64, 5.0, 10)
    assert side == 17  # 2 * ceil(10 / sqrt(2)) + 1: the 10x10 box corners reach r = 7.07
    sl = central_slice(64, side)
    r = radius_grid(64)
    inside = np.zeros((64, 64), bool)
    inside[sl, sl] = True
    assert inside[r < 7.08].all()  # disc r < 5, the box and the ring between them
    box = central_slice(64, 10)
    assert (box.start, box.stop) == (27, 37)


def test_radius_grid_per_pair_centres_and_edge_probe_side():
    cx, cy = np.array([0.0, 1.5, -2.0]), np.array([0.0, -0.5, 3.0])
    r = radius_grid(33, (cx, cy))
    assert r.shape == (3, 33, 33)
    for i in range(3):
        np.testing.assert_array_equal(r[i], radius_grid(33, (cx[i], cy[i])))
    np.testing.assert_array_equal(r[0], radius_grid(33))
    # the edge probe reads 1-px annuli up to 2 px beyond the largest mask radius
    assert central_side(64, 5.0, 10, edge_radius=7.0) == 19
    assert central_side(64, 5.0, 10, edge_radius=3.0) == 17


def test_stamps_classes_and_batches():
    ds = toy_cube(32, seed=2, chunk_pairs=8)
    st = ds.lensarray.stamps(split="train")
    assert set(np.unique(st["split"].values)) == {0}
    with pytest.raises(BadInputError, match="split"):
        ds.lensarray.stamps(split="holdout")
    c = ds.lensarray.with_classes()
    assert set(c["split_name"].values) <= {"train", "val", "test"} and "is_lens" in c.coords
    got = next(iter(ds.lensarray.batches("train", batch_size=8, seed=3, augment=())))
    from lensarray.training import batches

    ref = next(iter(batches(ds, "train", batch_size=8, seed=3, augment=())))
    np.testing.assert_array_equal(got["images"], ref["images"])


def test_diagnose_accepts_a_lazy_cube_never_stored(built):
    """A masked view is dask all the way down (no store behind the arc): diagnose runs on it and
    re-measures the lazily derived quantities exactly."""
    lazy = built["plain"].lensarray.mask_core("hard", 5.0)
    res, extras = diagnose(lazy, progress=False, n_boot=10, ablation=None)
    assert res["n_pairs"] == N_PAIRS
    assert res["core_flux"]["bands"]["r"]["q75"] == 0.0
    assert res["core_flux"]["max_abs_diff_vs_stored"] <= 1e-7  # float32 storage of a float64 fraction
    assert res["arc_snr"]["max_rel_diff_vs_measured"] < 1e-6
    table = extras["table"]
    # the kept squares hold the 10x10 box and the r < 5 disc; the edge probe's 17-px square
    # (annuli to 2 px beyond the r = 5 mask) travels as its 7 per-pair annulus means
    assert isinstance(table, xr.Dataset) and table["central"].shape[-2:] == (11, 11)
    assert table["edge_annulus_mean"].dims == ("lr_pair", "annulus") and table.sizes["annulus"] == 7
