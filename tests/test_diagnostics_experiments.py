"""Controlled experiments: core flux fraction vs theta_E, source offset, source size (real renderer)."""

import csv
import json

import numpy as np
import pytest

from lensarray.cli import main


def _render_available():
    try:
        from lensarray.physics.render import render_unit_arcs  # noqa: F401
    except ImportError:
        return False
    return True


needs_render = pytest.mark.skipif(not _render_available(), reason="lensarray.physics.render not available yet")


@needs_render
def test_theta_e_sweep_moves_light_out_of_the_core():
    from lensarray.diagnostics import run_experiment

    res = run_experiment("theta-e", n_points=6, offset=0.2, src_reff=0.2, psf_fwhm=1.3)
    f = np.array([r["core_flux_frac_r"] for r in res["rows"]])
    f0 = np.array([r["core_flux_frac_nopsf_r"] for r in res["rows"]])
    te = np.array([r["theta_e"] for r in res["rows"]])
    assert te[0] == pytest.approx(0.5) and te[-1] == pytest.approx(3.0)
    assert f[0] > 0.5  # theta_E = 1.9 px: both images sit in r < 5 px (the PSF spills some out)
    assert f[-1] < 0.1  # theta_E = 11.5 px
    assert np.all(np.diff(f) < 1e-3)
    # at large theta_E the PSF is what spreads arc light inwards
    assert f[-1] > f0[-1]
    mu = np.array([r["mu"] for r in res["rows"]])
    assert np.all(np.diff(mu) > 0)  # SIS: mu = 2 theta_E / beta for a point source
    inner = [r["inner_image_r_px"] for r in res["rows"]]
    np.testing.assert_allclose(inner, (te - 0.2) / 0.262, rtol=1e-6)


@needs_render
def test_offset_sweep_is_symmetric_for_a_round_lens():
    from lensarray.diagnostics import run_experiment

    res = run_experiment("offset", n_points=5, theta_e=1.2, src_reff=0.2)
    f = np.array([r["core_flux_frac_r"] for r in res["rows"]])
    np.testing.assert_allclose(f, f[::-1], atol=2e-3)
    mu = np.array([r["mu"] for r in res["rows"]])
    assert mu[2] > mu[0]  # a centred source makes an Einstein ring: the largest magnification


@needs_render
def test_reff_sweep_and_cli_outputs(tmp_path):
    rc = main(["experiment", "reff", "--out", str(tmp_path), "--points", "4", "--theta-e", "2.5", "--offset", "0"])
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / "reff.csv")))
    assert len(rows) == 4 and float(rows[0]["src_reff"]) == pytest.approx(0.1)
    data = json.loads((tmp_path / "reff.json").read_text())
    # an Einstein ring at 9.5 px: a larger source spreads light inwards, into the core
    for col in ("core_flux_frac_r", "core_flux_frac_nopsf_r"):
        f = np.array([r[col] for r in data["rows"]])
        assert np.all(np.diff(f) > 0), (col, f)
    assert data["rows"][0]["core_flux_frac_nopsf_r"] < 0.01
    assert (tmp_path / "reff.png").stat().st_size > 5000


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--points", "1"], "--points"),
        (["--psf-fwhm", "0"], "--psf-fwhm"),
        (["--theta-e", "50"], "--theta-e"),
    ],
)
def test_experiment_bad_input(tmp_path, capsys, args, needle):
    assert main(["experiment", "reff", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
