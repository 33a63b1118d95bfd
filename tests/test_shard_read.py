"""lensarray.shard_read: whole shards decoded into place equal zarr's own read, bit for bit,
and a damaged inner chunk is refused as zarr refuses it."""

import shutil

import numpy as np
import pytest
import zarr
from conftest import damaged_copy

from lensarray.cube import VARIABLES, open_cube
from lensarray.shard_read import _layout, read_pairs, zarr_array_of
from lensarray.store import open_group

PIXELS = ("host", "arc", "invvar", "maskbits")


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """A built cube of 30 pairs in shards of 8 (inner chunks of 4): the last shard is cut by the
    array's end inside an inner chunk (pairs 24-29: inner chunks of 4 and 2)."""
    from conftest import small_config

    from lensarray import pipeline

    url = str(tmp_path_factory.mktemp("shard_read") / "c.zarr")
    pipeline.build(small_config(30, shard=8, chunk=4, size=32), url, progress=False)
    return url


def test_read_pairs_equals_zarr_for_every_range_and_variable(cube):
    group = open_group(cube, mode="r")
    for name in VARIABLES:  # every stored variable: images, per-pair floats, ints, strings
        arr = group[name]
        for a, b in ((0, 8), (8, 24), (24, 30), (0, 30), (3, 11), (16, 29), (29, 30)):
            got = read_pairs(arr, a, b)
            assert got.dtype == arr.dtype and got.shape == (b - a, *arr.shape[1:])
            np.testing.assert_array_equal(got, arr[a:b])
    assert all(_layout(group[name]) is not None for name in PIXELS)  # the fast path is what was tested


def test_missing_inner_chunks_and_shards_read_as_the_fill_value(cube, tmp_path):
    url = tmp_path / "holes.zarr"
    shutil.copytree(cube, url)
    g = zarr.open_group(str(url), mode="r+")
    g["arc"][12:16] = np.nan  # all fill value (NaN): zarr stores no inner chunk for it
    (url / "host" / "c" / "2" / "0" / "0" / "0").unlink()  # a whole shard gone
    raw = (url / "arc" / "c" / "1" / "0" / "0" / "0").read_bytes()
    index = np.frombuffer(raw[-(2 * 16 + 4) : -4], "<u8").reshape(2, 2)  # 2 inner chunks a shard
    assert (index[1] == 2**64 - 1).all() and (index[0] != 2**64 - 1).all()  # the hole is real
    ro = zarr.open_group(str(url), mode="r")
    for name in ("arc", "host"):
        np.testing.assert_array_equal(read_pairs(ro[name], 0, 30), ro[name][:])
    assert np.isnan(read_pairs(ro["host"], 16, 24)).all() and np.isnan(read_pairs(ro["arc"], 12, 16)).all()


def test_a_damaged_inner_chunk_is_refused(cube, tmp_path):
    url = damaged_copy(cube, tmp_path / "bad.zarr", "invvar", shard=1)
    arr = zarr.open_group(str(url), mode="r")["invvar"]
    with pytest.raises(ValueError, match="crc32c"):
        read_pairs(arr, 8, 16)
    with pytest.raises(ValueError, match="(?i)checksum"):  # zarr's own read refuses it too
        arr[8:16]
    np.testing.assert_array_equal(read_pairs(arr, 0, 8), arr[0:8])  # the other shards read


def test_zarr_array_of_finds_only_plain_reads(cube):
    ds = open_cube(cube)
    arr = zarr_array_of(ds["host"].data)
    assert arr is not None and tuple(arr.shape) == ds["host"].shape
    np.testing.assert_array_equal(read_pairs(arr, 0, 30), ds["host"].values)
    assert zarr_array_of(ds["host"].isel(pair=slice(2, 9)).data) is None  # a selection
    assert zarr_array_of((ds["host"] * 2).data) is None  # arithmetic
    assert zarr_array_of(ds.lensarray.mask_core("hard", 3.0)["arc"].data) is None  # a lazy derivation


def test_the_pixel_pass_reads_stored_pixels_through_read_pairs(cube):
    from lensarray.diagnostics.features import _shard_reads

    ds = open_cube(cube)
    for name in PIXELS:
        data = _shard_reads(ds[name].data)
        assert data.name.startswith("read-") and data.chunks == ds[name].data.chunks
        np.testing.assert_array_equal(data.compute(), ds[name].values)
    sel = ds["host"].isel(pair=slice(1, 20)).data
    assert _shard_reads(sel) is sel  # anything but a plain read stays as it is
