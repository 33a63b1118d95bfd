"""`lensarray diagnose` end to end on toy cubes written to Zarr: exit codes, report.json, and
report.html rendered by headless Chromium with its figures decoded."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lensarray.cli import main
from lensarray.diagnostics import toy_cube


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("cubes")
    out = {}
    for kind in ("ring", "null", "core"):
        path = root / f"{kind}.zarr"
        toy_cube(96, kind=kind, seed=21).to_zarr(path, mode="w", consolidated=False)
        out[kind] = str(path)
    return out


@pytest.fixture(scope="module")
def ring_report(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    anchors = None
    from lensarray.testing import shared_data

    data = shared_data()
    args = [stores["ring"], "--null", stores["null"], "--out", str(out), "--bootstrap", "20", "--no-progress"]
    if data is not None:
        anchors = str(data / "cutouts" / "dr10_npz")
        args += ["--anchors", anchors]
    rc = main(["diagnose", *args])
    return rc, out, anchors


def test_passing_cube_exit_0_and_json_has_every_figure(ring_report):
    rc, out, anchors = ring_report
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    gates = {g["name"]: g for g in rep["gates"]}
    assert set(gates) >= {"core_lr_auc", "null_identity", "mask_edge"}
    for g in gates.values():
        assert set(g) >= {"name", "value", "threshold", "passed", "status", "meaning"}
    # the null test is an identity check (pass/fail), not an AUC
    assert gates["null_identity"]["status"] == "pass" and rep["null_identity"]["passed"]
    assert [s["identical"] for s in rep["null_identity"]["steps"]] == [True] * 4
    assert gates["core_lr_auc"]["threshold"] == 0.65
    assert rep["core_lr"]["region"] == "disc" and set(rep["core_lr_regions"]) == {"disc", "box", "ring"}
    for key in (
        "core_flux",
        "inner_image",
        "core_lr",
        "core_lr_masked",
        "null_identity",
        "systematics",
        "leakage",
        "visibility",
        "arc_snr",
        "config",
        "package_version",
        "memory",
        "edge_probe",
    ):
        assert rep[key] is not None, key
    assert rep["config"]["diagnostics"]["core_box"] == 10
    assert rep["memory"]["process_peak_rss_mib"] > 50
    if anchors:
        assert rep["anchors"]["n_anchors"] == 6 and rep["anchors"]["ratio_of_medians"] > 0


def test_failing_gate_exit_1_unless_no_fail(stores, tmp_path):
    assert (
        main(
            [
                "diagnose",
                stores["core"],
                "--out",
                str(tmp_path / "a"),
                "--bootstrap",
                "10",
                "--no-progress",
                "--ablation",
                "none",
            ]
        )
        == 1
    )
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    assert not next(g for g in rep["gates"] if g["name"] == "core_lr_auc")["passed"]
    assert (
        main(
            [
                "diagnose",
                stores["core"],
                "--out",
                str(tmp_path / "b"),
                "--bootstrap",
                "10",
                "--no-progress",
                "--ablation",
                "none",
                "--no-fail",
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--max-lr-pairs", "3"], "--max-lr-pairs"),
        (["--anchors", "/nonexistent/anchors"], "--anchors"),
        (["--null", "/nonexistent/null.zarr"], "--null"),
        (["--ablation", "fixed", "--r-mask", "-2"], "--r-mask"),
    ],
)
def test_bad_input_exit_2_one_line(stores, tmp_path, capsys, extra, needle):
    rc = main(["diagnose", stores["ring"], "--out", str(tmp_path / "x"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert needle in err and len(err.splitlines()) == 1


def test_missing_store_exit_2(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "nope.zarr"), "--out", str(tmp_path / "o")]) == 2
    assert "STORE" in capsys.readouterr().err


def test_console_script_runs(stores, tmp_path):
    exe = shutil.which("lensarray", path=os.path.dirname(sys.executable)) or shutil.which("lensarray")
    if exe is None:
        pytest.skip("console script not installed")
    p = subprocess.run(
        [exe, "diagnose", stores["core"], "--out", str(tmp_path / "r"), "--bootstrap", "10", "--ablation", "none"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1, p.stderr
    assert re.search(r"FAIL\s+core_lr_auc", p.stdout)
    assert re.search(r"NOT RUN\s+null_identity", p.stdout)  # no null cube: not run, never pass
    assert "diagnose: per-pair table" in p.stderr  # progress bar shown


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def test_report_html_renders_in_headless_chromium(ring_report, tmp_path):
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium not installed")
    _, out, _ = ring_report
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    # a probe copy: after load, write every image's decoded size into the DOM
    probe = page.replace(
        "</body>",
        "<script>window.addEventListener('load',()=>{const d=document.createElement('pre');"
        "d.id='probe';d.textContent=JSON.stringify([...document.images].map(i=>[i.naturalWidth,"
        "i.naturalHeight,i.complete]));document.body.appendChild(d);});</script></body>",
    )
    probe_path = tmp_path / "probe.html"
    probe_path.write_text(probe)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run([exe, *flags, "--dump-dom", probe_path.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert m, dom.stderr[-2000:]
    sizes = json.loads(m.group(1).replace("&quot;", '"'))
    assert len(sizes) >= 6  # core flux, LR AUC, arc_snr, systematics, visibility, examples (+ anchors)
    assert all(w > 200 and h > 150 and ok for w, h, ok in sizes), sizes
    shot = tmp_path / "shot.png"
    subprocess.run(
        [exe, *flags, f"--screenshot={shot}", "--window-size=1200,2400", (out / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] == 2400 and img.shape[1] == 1200
    assert np.std(img[..., :3]) > 0.05  # not a blank page


def test_gate_not_run_is_never_pass(stores, tmp_path):
    assert (
        main(
            [
                "diagnose",
                stores["ring"],
                "--out",
                str(tmp_path / "r"),
                "--bootstrap",
                "10",
                "--no-progress",
                "--ablation",
                "none",
            ]
        )
        == 0
    )
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    null = next(g for g in rep["gates"] if g["name"] == "null_identity")
    assert null["status"] == "not run" and null["passed"] is None
    page = (tmp_path / "r" / "report.html").read_text()
    assert "NOT RUN" in page and "all gates that ran pass (1 not run)" in page
    assert "all gates pass" not in page
    # tables are collapsible, no raw Python dicts in cells, units in headers
    assert page.count("<details") >= 8
    assert not re.search(r"<td>\{'", page) and "{&#x27;" not in page
    assert "θE lo (arcsec)" in page and "asinh(I / σ_sky)" in page


def test_report_uses_matplotlib_object_api_only():
    import inspect

    from lensarray.diagnostics import report

    src = inspect.getsource(report)
    assert "import matplotlib.pyplot" not in src and "plt." not in src and "matplotlib.use(" not in src
