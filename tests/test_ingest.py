"""Ingest of real and synthetic cutout files into a host cube, and bad files reported per file."""

import numpy as np
import pytest

from lensarray.cli import main
from lensarray.hosts.cutouts import HostCube, expand_inputs, ingest
from lensarray.testing import shared_data


def _fits(path, bands="grz", shape=(3, 80, 80), scale=0.262, data=None, seed=0):
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    img = data if data is not None else rng.normal(0, 0.005, shape).astype(np.float32)
    yy, xx = np.mgrid[0 : shape[-2], 0 : shape[-1]]
    img = img + 0.5 * np.exp(-((yy - shape[-2] // 2) ** 2 + (xx - shape[-1] // 2) ** 2) / 8.0)
    h = fits.Header()
    h["BANDS"] = bands
    for i, b in enumerate(bands):
        h[f"BAND{i}"] = b
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"], h["CRPIX2"] = shape[-1] / 2 + 0.5, shape[-2] / 2 + 0.5
    h["CD1_1"], h["CD2_2"], h["CD1_2"], h["CD2_1"] = -scale / 3600, scale / 3600, 0.0, 0.0
    fits.PrimaryHDU(img.astype(np.float32), header=h).writeto(path)
    return img


def test_fits_npz_parquet_and_bad_files(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    good = _fits(tmp_path / "good.fits")
    _fits(tmp_path / "rzg.fits", bands="rzg")  # other band order: reordered, not rejected
    _fits(tmp_path / "gr.fits", bands="gr", shape=(2, 80, 80))  # missing band
    _fits(tmp_path / "fine.fits", scale=0.143)  # wrong pixel scale
    nan = np.zeros((3, 80, 80), np.float32)
    nan[0, 5, 5] = np.nan
    _fits(tmp_path / "nan.fits", data=nan)
    (tmp_path / "text.fits").write_text("not a fits file")
    hwc = np.random.default_rng(1).normal(0, 0.01, (70, 70, 3)).astype(np.float32)
    np.savez(tmp_path / "stamp.npz", cutout=hwc, meta_ra=10.0, meta_dec=-5.0)
    stamp = np.random.default_rng(2).normal(0, 0.01, (3, 64, 64)).astype(np.float32)
    pq.write_table(
        pa.table({"stamp": [stamp.ravel().tolist()], "size": [64], "ra": [20.0], "dec": [1.0]}), tmp_path / "t.parquet"
    )
    out = tmp_path / "hosts.zarr"
    rc = main(["ingest", str(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0
    assert "accepted 4, rejected 4" in err
    for name, why in (
        ("gr.fits", "missing band"),
        ("fine.fits", "pixel scale"),
        ("nan.fits", "NaN"),
        ("text.fits", "not a FITS"),
    ):
        assert any(name in line and why in line for line in err.splitlines()), (name, err)
    hc = HostCube(str(out))
    assert hc.n_hosts == 4
    src = [str(s) for s in hc.ds["source"].values]
    t = hc.take(np.arange(4))
    i_good, i_npz = src.index(str(tmp_path / "good.fits")), src.index(str(tmp_path / "stamp.npz"))
    # crop about the centre: 80 -> 64 keeps pixel (40, 40) at (32, 32)
    np.testing.assert_allclose(t["host"][i_good], good[:, 8:72, 8:72], rtol=1e-6)
    # HWC npz moved to CHW and zero-padded about the centre (70 -> 64 crops 3 px each side)
    np.testing.assert_allclose(t["host"][i_npz], np.moveaxis(hwc, -1, 0)[:, 3:67, 3:67], rtol=1e-6)
    i_rzg = src.index(str(tmp_path / "rzg.fits"))
    assert t["ra"][i_good] == pytest.approx(150.0, abs=1e-3)
    assert hc.ds["invvar_estimated"].values[i_rzg]
    assert (t["invvar"] > 0).all()


def test_refuses_to_overwrite(tmp_path, capsys):
    _fits(tmp_path / "a.fits")
    out = str(tmp_path / "h.zarr")
    assert main(["ingest", str(tmp_path / "a.fits"), "--out", out]) == 0
    assert main(["ingest", str(tmp_path / "a.fits"), "--out", out]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.skipif(shared_data() is None, reason="../shared/data not present")
def test_real_cutouts(tmp_path):
    d = shared_data() / "cutouts"
    paths = expand_inputs([str(d / "dr10_npz"), str(d / "decals_fits"), str(d / "des_coadd_weight")])
    rep = ingest(paths, str(tmp_path / "real.zarr"))
    rejected = dict(rep.rejected)
    # DR5 cutouts at 0.143 and 0.130 "/pix are refused for their pixel scale; the rest are in
    assert any("example_c.fits" in k and "pixel scale" in v for k, v in rejected.items())
    assert len(rep.accepted) == 8
    hc = HostCube(str(tmp_path / "real.zarr"))
    t = hc.take(np.arange(hc.n_hosts))
    names = [str(s) for s in hc.ds["source"].values]
    # brick names of the DR10 npz come from their metadata; DES g,r,z coadds merge into one host
    assert "0001m040" in t["brickname"]
    des = [i for i, s in enumerate(names) if "DES_" in s]
    assert len(des) == 1 and not hc.ds["invvar_estimated"].values[des[0]]
    # DR10 npz: estimated 5-sigma point-source depths in the DR10 range (g ~24.8-25.4, z ~23.4-23.9)
    dr10 = [i for i, s in enumerate(names) if "dr10_npz" in s]
    depth = t["psfdepth"][dr10]
    assert np.all((depth[:, 0] > 24.0) & (depth[:, 0] < 26.0)) and np.all((depth[:, 2] > 23.0) & (depth[:, 2] < 24.7))


def _npz(path, invvar=None, seed=0, size=64):
    rng = np.random.default_rng(seed)
    img = rng.normal(0, 0.01, (3, size, size)).astype(np.float32)
    kw = {} if invvar is None else {"invvar": invvar}
    np.savez(path, cutout=img, meta_ra=10.0 + seed, meta_dec=-5.0, **kw)
    return img


def test_bad_invvar_is_rejected_with_the_file_named(tmp_path):
    good_iv = np.full((3, 64, 64), 100.0, np.float32)
    nan_iv = good_iv.copy()
    nan_iv[1, 3, 3] = np.nan
    neg_iv = good_iv.copy()
    neg_iv[0, 10, 10] = -1.0
    _npz(tmp_path / "good.npz", good_iv)
    _npz(tmp_path / "nan_iv.npz", nan_iv, seed=1)
    _npz(tmp_path / "neg_iv.npz", neg_iv, seed=2)
    _npz(tmp_path / "shape_iv.npz", good_iv[:, :40, :40], seed=3)
    rep = ingest(expand_inputs([str(tmp_path)]), str(tmp_path / "h.zarr"))
    rejected = {k.rsplit("/", 1)[-1]: v for k, v in rep.rejected}
    assert rep.accepted == [str(tmp_path / "good.npz")]
    assert "NaN" in rejected["nan_iv.npz"] and "negative" in rejected["neg_iv.npz"]
    assert "invvar shape" in rejected["shape_iv.npz"]


def test_fits_invvar_plane_of_another_shape_is_rejected(tmp_path):
    from astropy.io import fits

    _fits(tmp_path / "a.fits")
    with fits.open(tmp_path / "a.fits", mode="update") as hdul:
        hdul.append(fits.ImageHDU(np.ones((3, 40, 40), np.float32), name="INVVAR"))
    from lensarray.hosts.cutouts import IngestError

    with pytest.raises(IngestError, match="INVVAR plane shape"):  # the only input: nothing usable
        ingest([str(tmp_path / "a.fits")], str(tmp_path / "h.zarr"))
    assert not (tmp_path / "h.zarr").exists()


def test_rotated_wcs_pixel_scale(tmp_path):
    """A CD matrix rotated by 30 deg: CD2_2 alone reads 0.227"/px (rejected); the WCS gives 0.262."""
    from astropy.io import fits

    from lensarray.hosts.cutouts import pixel_scale_of

    _fits(tmp_path / "rot.fits")
    th = np.radians(30.0)
    s = 0.262 / 3600
    with fits.open(tmp_path / "rot.fits", mode="update") as hdul:
        h = hdul[0].header
        h["CD1_1"], h["CD1_2"] = -s * np.cos(th), s * np.sin(th)
        h["CD2_1"], h["CD2_2"] = s * np.sin(th), s * np.cos(th)
        assert abs(h["CD2_2"]) * 3600 == pytest.approx(0.2269, abs=1e-3)
        assert pixel_scale_of(h) == pytest.approx(0.262, rel=1e-6)
    rep = ingest([str(tmp_path / "rot.fits")], str(tmp_path / "h.zarr"))
    assert rep.accepted == [str(tmp_path / "rot.fits")], rep.rejected


def test_ingest_recurses_folders_with_a_glob(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    _npz(tmp_path / "top.npz")
    _npz(tmp_path / "a" / "b" / "deep.npz", seed=1)
    _npz(tmp_path / ".hidden" / "skip.npz", seed=2)
    _fits(tmp_path / "a" / "x.fits")
    found = expand_inputs([str(tmp_path)])
    assert sorted(p.rsplit("/", 1)[-1] for p in found) == ["deep.npz", "top.npz", "x.fits"]
    only_npz = expand_inputs([str(tmp_path)], pattern="*.npz")
    assert sorted(p.rsplit("/", 1)[-1] for p in only_npz) == ["deep.npz", "top.npz"]
    assert main(["ingest", str(tmp_path), "--glob", "*.npz", "--out", str(tmp_path / "h.zarr"), "--workers", "0"]) == 0
    assert HostCube(str(tmp_path / "h.zarr")).n_hosts == 2


def test_overwrite_checks_inputs_first_and_replaces_only_a_host_cube(tmp_path, capsys):
    _fits(tmp_path / "a.fits")
    out = tmp_path / "h.zarr"
    assert main(["ingest", str(tmp_path / "a.fits"), "--out", str(out)]) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    (tmp_path / "junk.fits").write_text("garbage")
    assert main(["ingest", str(tmp_path / "junk.fits"), "--out", str(out), "--overwrite"]) == 2
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the good cube is untouched
    assert HostCube(str(out)).n_hosts == 1
    # a user's folder and a lens cube are never replaced by a host cube
    user = tmp_path / "thesis"
    (user / "sub").mkdir(parents=True)
    (user / "thesis.tex").write_text("chapter 1")
    assert main(["ingest", str(tmp_path / "a.fits"), "--out", str(user), "--overwrite"]) == 2
    assert (user / "thesis.tex").read_text() == "chapter 1"
    err = capsys.readouterr().err
    assert "not a lensarray host cube" in err and "Traceback" not in err


@pytest.mark.skipif(shared_data() is None, reason="../shared/data not present")
def test_six_real_dr10_hosts_in_three_regions_build_a_cube(tmp_path, caplog):
    """The 6 real DR10 cutouts lie in 3 sky regions: a 12-pair build degrades to the best
    region-disjoint split (one warning) instead of refusing."""
    from lensarray.cube import open_cube

    hosts = str(tmp_path / "h.zarr")
    assert main(["ingest", str(shared_data() / "cutouts" / "dr10_npz"), "--out", hosts]) == 0
    out = str(tmp_path / "real.zarr")
    assert (
        main(
            [
                "build",
                "--hosts",
                hosts,
                "--out",
                out,
                "--pairs",
                "12",
                "--shard-pairs",
                "4",
                "--chunk-pairs",
                "4",
                "--workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    ds = open_cube(out, chunks=None)
    split, region = ds["split"].values, ds["region"].values
    assert ds.sizes["pair"] == 12 and set(np.unique(split).tolist()) == {0, 1, 2}
    for r in np.unique(region):  # still region-disjoint
        assert np.unique(split[region == r]).size == 1


def test_progress_bars_are_the_callers(tmp_path, capsys):
    """The library is silent unless asked (``progress=True``); the CLI shows one bar per pass over
    the files, and ``--no-progress`` / ``-q`` turn them off."""
    for i in range(3):
        _fits(tmp_path / f"h{i}.fits", seed=i)
    files = sorted(str(p) for p in tmp_path.glob("*.fits"))
    ingest(files, str(tmp_path / "quiet.zarr"), size=32)
    assert "ingest:" not in capsys.readouterr().err
    ingest(files, str(tmp_path / "lib.zarr"), size=32, progress=True)
    err = capsys.readouterr().err
    assert "ingest: check" in err and "ingest: write" in err and "3/3" in err
    assert main(["ingest", *files, "--out", str(tmp_path / "cli.zarr"), "--size", "32"]) == 0
    err = capsys.readouterr().err
    assert "ingest: check" in err and "ingest: write" in err
    for flag in ("--no-progress", "-q"):
        assert main(["ingest", *files, "--out", str(tmp_path / f"cli{flag}.zarr"), "--size", "32", flag]) == 0
        assert "ingest: check" not in capsys.readouterr().err
