"""CF metadata of a built cube: plain ``xr.open_zarr`` opens it without a warning, flags decode,
every ``units`` parses with astropy, every variable and coordinate has a ``long_name``."""

import warnings

import astropy.units as u
import numpy as np
import pytest
import xarray as xr
import zarr

from lensarray import conventions, pipeline
from lensarray.cube import NEGATIVE_KINDS, SPLIT_NAMES, VARIABLES


@pytest.fixture(scope="module")
def cube_url(tmp_path_factory, make_cfg):
    url = str(tmp_path_factory.mktemp("cf") / "cf.zarr")
    pipeline.build(make_cfg(n=24, shard=8, chunk=4, size=16, **{"negatives.fraction": 0.5}), url, progress=False)
    # a finished build consolidates its metadata (issue #15.2); done here so this test stands alone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zarr: consolidated metadata is not in the v3 spec
        zarr.consolidate_metadata(url, zarr_format=3)
    return url


def test_plain_open_zarr_is_warning_free(cube_url):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(cube_url)
    assert ds.attrs["Conventions"] == conventions.CF_VERSION
    assert set(VARIABLES) <= set(ds.data_vars)


def test_every_variable_and_coordinate_is_labelled_and_its_units_parse(cube_url):
    ds = xr.open_zarr(cube_url)
    for name in list(VARIABLES) + ["pair", "band", "y", "x"]:
        attrs = ds[name].attrs
        assert attrs.get("long_name"), name
        if "units" in attrs:
            unit = u.Unit(attrs["units"], parse_strict="raise")
            if name in ("src_mag", "psfdepth", "host_mag"):
                # a magnitude in the AB system, not the product of the AB flux unit and mag
                assert isinstance(unit, u.MagUnit) and unit.physical_unit == u.AB, name
        coded = "flag_values" in attrs or "flag_masks" in attrs
        # CF: string and flag variables carry no units; every numeric quantity does
        assert ("units" in attrs) == (not coded and ds[name].dtype.kind not in "US"), name
    assert u.Unit(ds["host"].attrs["units"]) == u.nanomaggy
    assert u.Unit(ds["invvar"].attrs["units"]) == u.nanomaggy**-2
    assert u.Unit(ds["theta_e"].attrs["units"]) == u.arcsec


def test_flags_decode_with_cf_xarray(cube_url):
    cf_xarray = pytest.importorskip("cf_xarray")
    del cf_xarray
    ds = xr.open_zarr(cube_url)
    split = ds["split"].load()
    for code, name in enumerate(SPLIT_NAMES):
        np.testing.assert_array_equal((split.cf == name).values, split.values == code)
    neg = ds["hard_negative"].load()
    assert 0 < int((neg > 0).sum()) < neg.size  # both kinds present, so the check below can fail
    for code, name in enumerate(NEGATIVE_KINDS):
        np.testing.assert_array_equal((neg.cf == name).values, neg.values == code)
    mb = ds["maskbits"].load()
    assert (mb.values != 0).any()
    for bit, name in enumerate(conventions.MASKBITS):
        np.testing.assert_array_equal((mb.cf == name).values, (mb.values & (1 << bit)) != 0, err_msg=name)


def test_flag_meanings_match_the_schema_codes():
    attrs = conventions.attrs_for("split", "", "", "int8")
    assert dict(zip(attrs["flag_meanings"].split(), attrs["flag_values"], strict=True)) == {
        "unassigned": -1,
        "train": 0,
        "val": 1,
        "test": 2,
    }
    mb = conventions.attrs_for("maskbits", "", "", "int32")
    names = mb["flag_meanings"].split()
    assert names[1] == "BRIGHT" and names[12] == "GALAXY" and names[16] == "SUB_BLOB"
    assert mb["flag_masks"] == [2**b for b in range(17)]
    assert "units" not in mb and "units" not in attrs
