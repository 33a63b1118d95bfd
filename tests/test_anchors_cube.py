"""Anchor brightness from a cube (``diagnose --anchors CUBE``): per host, chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

from lensarray.diagnostics.anchors import REF_SCALE, cube_central_brightness
from lensarray.diagnostics.features import CENTRAL_RADIUS_PX, central_brightness
from lensarray.diagnostics.toycube import toy_cube


@pytest.mark.parametrize("backing", ["numpy", "dask"])
def test_cube_central_brightness_is_the_r_band_host_median_of_every_pair(backing):
    ds = toy_cube(70, kind="core", size=32, seed=3)
    if backing == "dask":
        ds = ds.chunk({"pair": 16})  # 16, 16, 16, 16, 6: the last chunk is short
    got = cube_central_brightness(ds, chunk_pairs=32)
    host_r = np.asarray(ds["host"].sel(band="r").values, np.float64)
    want = central_brightness(host_r, radius_px=CENTRAL_RADIUS_PX)
    assert got.shape == (70,)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.unique(got).size > 10  # hosts differ: not one value broadcast


def test_cube_central_brightness_compares_at_the_same_angular_radius():
    ds = toy_cube(8, kind="core", size=32, seed=4)
    ds.attrs["pixel_scale"] = 2 * REF_SCALE  # pixels twice as large: half the radius, 4x the area
    got = cube_central_brightness(ds)
    host_r = np.asarray(ds["host"].sel(band="r").values, np.float64)
    np.testing.assert_allclose(got, central_brightness(host_r, radius_px=CENTRAL_RADIUS_PX / 2) / 4, rtol=1e-12)
