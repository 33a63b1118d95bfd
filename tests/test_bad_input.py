"""Bad input and faults through the real command line (subprocesses of the installed console
script): every refusal is exit status 2 with exactly one stderr line and no traceback, and
nothing in the working folder is written, changed or deleted.

One small built cube (and toy cubes written to Zarr) are shared by the module; each CLI process
costs ~2 s of imports, so cases are grouped in one parametrised test.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lensarray.diagnostics import toy_cube

LENSARRAY = str(Path(sys.executable).parent / "lensarray")
ROOT = Path(__file__).resolve().parent.parent


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no 1 s IMDS probes when looking for credentials
    env.update(extra)
    return env


def cli(*args, cwd, env=None, timeout=120, preexec_fn=None):
    t0 = time.monotonic()
    r = subprocess.run(
        [LENSARRAY, *map(str, args)],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def snapshot(root: Path) -> dict:
    """Every file below ``root`` with its content digest (and FIFOs by name)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_fifo():
            out[str(p.relative_to(root))] = "fifo"
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = "dir"
    return out


def assert_one_line_refusal(rc, err, what):
    # the toy cubes of the fixture are written with plain xarray (no completion record): the
    # warning that says so is expected and is not part of the refusal
    lines = [line for line in err.splitlines() if line.strip() and "has no shard completion record" not in line]
    assert rc == 2, (what, rc, err)
    assert "Traceback" not in err, (what, err)
    assert len(lines) == 1 and lines[0].startswith("lensarray: error: "), (what, err)
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory, make_cfg):
    """A folder with a real built cube, toy cubes, a regular file, a TOML or two, crafted stores."""
    from lensarray.pipeline import build

    root = tmp_path_factory.mktemp("bad_input")
    build(make_cfg(8, shard=8, chunk=4, size=None, seed=None), str(root / "cube.zarr"), progress=False)
    toy_cube(48, kind="core", seed=3).to_zarr(root / "core.zarr", mode="w", consolidated=False)
    toy_cube(48, kind="ring", seed=3).to_zarr(root / "ring.zarr", mode="w", consolidated=False)
    other = toy_cube(48, kind="null", seed=4)
    other.attrs["config"] = json.dumps(
        {**json.loads(other.attrs["config"]), "lens": {**json.loads(other.attrs["config"])["lens"], "theta_e_max": 2.0}}
    )
    other.to_zarr(root / "othernull.zarr", mode="w", consolidated=False)
    (root / "afile").write_text("a user's file\n")
    (root / "bad_memory.toml").write_text('[cluster]\nmemory_limit = "huge"\n')
    (root / "bad_address.toml").write_text('[cluster]\naddress = "not an address"\n')
    (root / "bad_threshold.toml").write_text("[diagnostics]\nlr_auc_max = 2.0\n")
    # crafted stores: corrupt zarr.json, a FIFO zarr.json, a declared shape of 10^9 pairs, a lying
    # shard_pairs attribute
    for name in ("corrupt", "fifo", "huge", "shardlie"):
        shutil.copytree(root / "cube.zarr", root / f"{name}.zarr")
    (root / "corrupt.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')
    os.remove(root / "fifo.zarr" / "zarr.json")
    os.mkfifo(root / "fifo.zarr" / "zarr.json")
    meta = json.loads((root / "huge.zarr" / "host" / "zarr.json").read_text())
    meta["shape"][0] = 10**9
    (root / "huge.zarr" / "host" / "zarr.json").write_text(json.dumps(meta))
    meta = json.loads((root / "shardlie.zarr" / "zarr.json").read_text())
    meta["attributes"]["shard_pairs"] = 10**9
    (root / "shardlie.zarr" / "zarr.json").write_text(json.dumps(meta))
    iv = np.full((3, 64, 64), 50.0, np.float32)
    iv[1, 2, 2] = np.nan
    (root / "cutouts").mkdir()
    np.savez(
        root / "cutouts" / "nan_invvar.npz", cutout=np.random.default_rng(0).normal(0, 0.01, (3, 64, 64)), invvar=iv
    )
    return root


#: (label, argv): every one must be refused in one line, exit 2, nothing written or deleted.
CLOSED = _free_port()
CASES = [
    ("--memory-limit garbage", ["build", "--out", "new.zarr", "--pairs", "8", "--memory-limit", "lots"]),
    ("cluster.memory_limit garbage", ["build", "--out", "new.zarr", "--pairs", "8", "--config", "bad_memory.toml"]),
    ("--scheduler garbage", ["build", "--out", "new.zarr", "--pairs", "8", "--scheduler", "garbage!!"]),
    ("cluster.address garbage", ["build", "--out", "new.zarr", "--pairs", "8", "--config", "bad_address.toml"]),
    ("--workers -1", ["build", "--out", "new.zarr", "--pairs", "8", "--workers", "-1"]),
    (
        "diagnose unreachable --scheduler",
        ["diagnose", "ring.zarr", "--out", "rep", "--scheduler", f"tcp://127.0.0.1:{CLOSED}"],
    ),
    (
        "diagnose old --address unreachable",
        ["diagnose", "ring.zarr", "--out", "rep", "--address", f"tcp://127.0.0.1:{CLOSED}"],
    ),
    ("--hosts missing", ["build", "--out", "new.zarr", "--pairs", "8", "--hosts", "missing.zarr"]),
    ("--hosts a lens cube", ["build", "--out", "new.zarr", "--pairs", "8", "--hosts", "cube.zarr"]),
    ("--hosts a regular file", ["build", "--out", "new.zarr", "--pairs", "8", "--hosts", "afile"]),
    ("build --out under a file", ["build", "--out", "afile/sub.zarr", "--pairs", "8"]),
    ("build --out ''", ["build", "--out", "", "--pairs", "8"]),
    ("build --out existing cube", ["build", "--out", "cube.zarr", "--pairs", "8"]),
    ("ingest --out under a file", ["ingest", "cutouts", "--out", "afile/h.zarr"]),
    # refused after the pass that reads every input (its progress bar would be on stderr too)
    ("ingest NaN invvar", ["ingest", "cutouts", "--out", "h.zarr", "--no-progress"]),
    ("ingest --overwrite a lens cube", ["ingest", "cutouts", "--out", "cube.zarr", "--overwrite"]),
    ("ingest missing SRC", ["ingest", "nothing_here", "--out", "h.zarr"]),
    (
        "inspect s3 without credentials",
        ["inspect", "s3://bucket/cube.zarr", "--endpoint-url", f"http://127.0.0.1:{CLOSED}"],
    ),
    ("inspect missing store", ["inspect", "missing.zarr"]),
    ("inspect corrupt zarr.json", ["inspect", "corrupt.zarr"]),
    ("verify corrupt zarr.json", ["verify", "corrupt.zarr"]),
    ("inspect FIFO zarr.json", ["inspect", "fifo.zarr"]),
    ("verify declared 10^9 pairs", ["verify", "huge.zarr"]),
    ("inspect declared 10^9 pairs", ["inspect", "huge.zarr"]),
    ("verify lying shard_pairs", ["verify", "shardlie.zarr"]),
    ("preview --stretch 0", ["preview", "cube.zarr", "--out", "p.png", "--stretch", "0"]),
    ("preview unknown extension", ["preview", "cube.zarr", "--out", "p.gif"]),
    ("preview missing folder", ["preview", "cube.zarr", "--out", "nofolder/p.png"]),
    ("preview --pairs 5:2", ["preview", "cube.zarr", "--out", "p.png", "--pairs", "5:2"]),
    ("diagnose --null not a null cube", ["diagnose", "ring.zarr", "--null", "core.zarr", "--out", "rep"]),
    ("diagnose --null of another config", ["diagnose", "ring.zarr", "--null", "othernull.zarr", "--out", "rep"]),
    ("diagnose --config bad threshold", ["diagnose", "ring.zarr", "--out", "rep", "--config", "bad_threshold.toml"]),
    ("evaluate --fpr 0.7", ["evaluate", "ring.zarr", "--baseline", "--out", "ev", "--fpr", "0.7"]),
    ("evaluate missing scores", ["evaluate", "ring.zarr", "--scores", "none.npz", "--out", "ev"]),
    ("experiment --points 1", ["experiment", "reff", "--out", "exp", "--points", "1"]),
    ("--pairs abc (argparse type error)", ["build", "--out", "new.zarr", "--pairs", "abc"]),
    ("build without --out", ["build", "--pairs", "8"]),
]

#: what each refusal must name (the field or the file), checked on the one line
NAMES = {
    "--memory-limit garbage": "--memory-limit",
    "cluster.memory_limit garbage": "cluster.memory_limit",
    "--scheduler garbage": "--scheduler",
    "cluster.address garbage": "cluster.address",
    "diagnose unreachable --scheduler": "cannot reach scheduler",
    "--hosts missing": "--hosts",
    "--hosts a lens cube": "not a lensarray host cube",
    "build --out under a file": "is a file",
    "ingest NaN invvar": "nan_invvar.npz",
    "ingest --overwrite a lens cube": "holds a lensarray cube",
    "inspect s3 without credentials": "no S3 credentials",
    "inspect FIFO zarr.json": "not a regular file",
    "verify declared 10^9 pairs": "declared host shape",
    "verify lying shard_pairs": "shard_pairs",
    "preview --stretch 0": "--stretch",
    "preview unknown extension": ".png",
    "diagnose --null not a null cube": "not a null-injection cube",
    "diagnose --null of another config": "lens.theta_e_max",
    "diagnose --config bad threshold": "diagnostics.lr_auc_max",
    "--pairs abc (argparse type error)": "--pairs",
    "build without --out": "--out",
}

#: filled by the tests, printed at the end of the module (the tally of the closing note)
TALLY: list[tuple[str, str]] = []


@pytest.mark.parametrize("label, argv", CASES, ids=[c[0] for c in CASES])
def test_refused_in_one_line_nothing_written(work, label, argv):
    before = snapshot(work)
    rc, out, err, seconds = cli(*argv, cwd=work, timeout=90)
    line = assert_one_line_refusal(rc, err, label)
    assert snapshot(work) == before, f"{label}: files changed"
    if label in NAMES:
        assert NAMES[label] in line, (label, line)
    assert seconds < 60, (label, seconds)  # nothing hangs (unreachable scheduler: 5 s timeout)
    TALLY.append((label, f"exit 2, 1 line, {seconds:.1f} s: {line.removeprefix('lensarray: error: ')[:90]}"))


def test_a_clean_build_prints_no_traceback(work):
    rc, out, err, _ = cli(
        "build",
        "--out",
        "clean.zarr",
        "--pairs",
        "8",
        "--shard-pairs",
        "4",
        "--chunk-pairs",
        "4",
        "--workers",
        "1",
        "--no-progress",
        cwd=work,
        timeout=300,
    )
    assert rc == 0, err
    for bad in ("Traceback", "Unclosed client session", "Cannot synchronously wait", "Error"):
        assert bad not in err, err
    shutil.rmtree(work / "clean.zarr")
    TALLY.append(("clean build on a local cluster", "exit 0, no traceback / bokeh / session warnings"))


def test_disk_full_is_one_line_with_the_resume_hint_and_resumable(work):
    def limited():  # a file-size limit: every write past 150 kB fails (EFBIG), like a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    args = [
        "build",
        "--out",
        "full.zarr",
        "--pairs",
        "16",
        "--shard-pairs",
        "8",
        "--chunk-pairs",
        "4",
        "--workers",
        "0",
        "--no-progress",
    ]
    rc, out, err, _ = cli(*args, cwd=work, timeout=300, preexec_fn=limited)
    line = assert_one_line_refusal(rc, err, "disk full")
    assert "--resume --out full.zarr" in line
    rc, out, err, _ = cli(*args, "--resume", cwd=work, timeout=300)  # space is back: it finishes
    assert rc == 0, err
    from lensarray.cube import open_cube

    assert open_cube(str(work / "full.zarr"), chunks=None).sizes["pair"] == 16
    shutil.rmtree(work / "full.zarr")
    TALLY.append(("disk full during build (RLIMIT_FSIZE)", "exit 2, 1 line with the resume hint; --resume finishes"))


def test_verify_never_fetches_a_url_the_cube_names(work):
    """A cube whose recorded hosts.source points at a server we run: verify must not connect."""
    crafted = work / "urlcube.zarr"
    shutil.copytree(work / "cube.zarr", crafted)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    meta = json.loads((crafted / "zarr.json").read_text())
    cfg = json.loads(meta["attributes"]["config"])
    cfg["hosts"]["source"] = f"http://127.0.0.1:{port}/evil.zarr"
    meta["attributes"]["config"] = json.dumps(cfg)
    (crafted / "zarr.json").write_text(json.dumps(meta))
    try:
        rc, out, err, seconds = cli("verify", crafted, "--no-progress", cwd=work, timeout=120)
        try:
            conn, _ = listener.accept()
            conn.close()
            connected = True
        except TimeoutError:
            connected = False
    finally:
        listener.close()
        shutil.rmtree(crafted)
    assert not connected
    # the edited configuration is itself caught: every shard's digest is bound to the recorded
    # configuration, so the crafted cube fails verification (exit 1) without any connection
    assert rc == 1 and "does not match the shard's digest" in err and "Traceback" not in err, err
    TALLY.append(("crafted hosts.source URL in verify", f"no connection, exit 1 in {seconds:.0f} s, tampering caught"))


def test_auditor_sets_the_bar_not_the_cube(work, tmp_path):
    """A core-shortcut cube whose own attrs relax lr_auc_max to 1.0 still fails at 0.65."""
    ds = toy_cube(48, kind="core", seed=5)
    cfg = json.loads(ds.attrs["config"])
    cfg["diagnostics"]["lr_auc_max"] = 1.0
    ds.attrs["config"] = json.dumps(cfg)
    ds.to_zarr(tmp_path / "lenient.zarr", mode="w", consolidated=False)
    rc, out, err, _ = cli(
        "diagnose",
        tmp_path / "lenient.zarr",
        "--out",
        tmp_path / "rep",
        "--bootstrap",
        "10",
        "--no-progress",
        "--ablation",
        "none",
        cwd=tmp_path,
        timeout=300,
    )
    assert rc == 1, err
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    gate = next(g for g in rep["gates"] if g["name"] == "core_lr_auc")
    assert gate["threshold"] == 0.65 and not gate["passed"]
    assert rep["thresholds"]["source"] == "lensarray defaults" and rep["thresholds"]["lr_auc_max"] == 0.65
    assert rep["cube_config"]["diagnostics"]["lr_auc_max"] == 1.0  # shown beside, never used
    # the auditor's own --config moves the bar
    (tmp_path / "audit.toml").write_text("[diagnostics]\nlr_auc_max = 0.999\n")
    rc, out, err, _ = cli(
        "diagnose",
        tmp_path / "lenient.zarr",
        "--out",
        tmp_path / "rep2",
        "--bootstrap",
        "10",
        "--no-progress",
        "--ablation",
        "none",
        "--config",
        tmp_path / "audit.toml",
        cwd=tmp_path,
        timeout=300,
    )
    rep = json.loads((tmp_path / "rep2" / "report.json").read_text())
    assert next(g for g in rep["gates"] if g["name"] == "core_lr_auc")["threshold"] == 0.999
    assert rep["thresholds"]["source"] == "auditor configuration"
    TALLY.append(("cube attrs lr_auc_max = 1.0 on a core-shortcut cube", "FAIL at 0.65 (exit 1); --config moves it"))


def test_null_twin_check_accepts_the_real_twin():
    from lensarray.diagnostics.audit import check_null_twin
    from lensarray.errors import BadInputError

    ring, null = toy_cube(24, kind="ring", seed=2), toy_cube(24, kind="null", seed=2)
    check_null_twin(ring, null)  # same config but run.null, same pairs
    with pytest.raises(BadInputError, match="other pairs|differs"):
        check_null_twin(ring, toy_cube(20, kind="null", seed=2))
    with pytest.raises(BadInputError, match="not a null-injection cube"):
        check_null_twin(ring, toy_cube(24, kind="ring", seed=2))


@pytest.fixture(scope="module", autouse=True)
def _print_tally():
    """Print the tally of this module's inputs when its tests are done (run with -s to see it).
    A fixture, not a test: under xdist a test reading TALLY may run before the tests that fill it."""
    yield
    if TALLY:
        width = max(len(a) for a, _ in TALLY)
        print("\n| input tried | result |\n|---|---|")
        for a, b in TALLY:
            print(f"| {a:<{width}} | {b} |")
