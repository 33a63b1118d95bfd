"""The library/CLI boundary: one error printer and exit-code map, shared flags, logging instead of
prints, no global matplotlib state, S3 commands without leaked sessions, bounded anchor memory."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lensarray.cli import COMMANDS, main, make_parser

ROOT = Path(__file__).resolve().parent.parent
SHARED_CLUSTER = ("--scheduler", "--cluster", "--workers", "--threads-per-worker", "--memory-limit")
SHARED_STORAGE = ("--endpoint-url", "--profile", "--anon")


def _subparsers():
    parser = make_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


# experiment, config and study open no store and start no cluster (study renders its cubes in
# blocks in this process and keeps none); plan is checked below
@pytest.mark.parametrize("name", [c for c in COMMANDS if c not in ("experiment", "plan", "config", "study")])
def test_every_store_command_takes_the_same_cluster_and_storage_flags(name):
    sub = _subparsers()[name]
    flags = {opt for a in sub._actions for opt in a.option_strings}
    missing = [f for f in SHARED_CLUSTER + SHARED_STORAGE + ("-v", "-q") if f not in flags]
    assert not missing, (name, missing)
    text = sub.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    if name == "diagnose":
        assert "(default: 20000)" in text and "--address" not in text  # old name kept, hidden


def test_commands_without_a_cluster_take_what_they_use():
    """plan starts no cluster (it reads a host cube: storage flags; --workers scales its estimate);
    config and experiment open no store and start no cluster."""
    plan = {opt for a in _subparsers()["plan"]._actions for opt in a.option_strings}
    assert {"--workers", *SHARED_STORAGE} <= plan
    assert "--scheduler" not in plan
    config = {opt for a in _subparsers()["config"]._actions for opt in a.option_strings}
    assert not config & {"--scheduler", "--endpoint-url"}


def test_errors_map_to_exit_codes_in_one_place(capsys, monkeypatch):
    from lensarray.commands import inspect as inspect_cmd
    from lensarray.errors import BadInputError, GateFailure

    def refuse(args):
        raise BadInputError("thing = 3: allowed\n  [0, 1]")

    monkeypatch.setattr(inspect_cmd, "run", refuse)
    assert main(["inspect", "x"]) == 2
    err = capsys.readouterr().err
    assert err == "lensarray: error: thing = 3: allowed | [0, 1]\n"

    def gate(args):
        raise GateFailure("core_lr_auc 0.9 >= 0.65")

    monkeypatch.setattr(inspect_cmd, "run", gate)
    assert main(["inspect", "x"]) == 1

    def bug(args):  # a programming error inside a command is a bug: it keeps its traceback
        raise ValueError("index 3 is out of bounds")

    monkeypatch.setattr(inspect_cmd, "run", bug)
    with pytest.raises(ValueError, match="out of bounds"):
        main(["inspect", "x"])


def test_verbosity_flags_configure_the_lensarray_logger(tmp_path):
    from lensarray.cli import configure_logging

    configure_logging(0, 0)
    assert logging.getLogger("lensarray").level == logging.INFO
    configure_logging(0, 1)
    assert logging.getLogger("lensarray").level == logging.WARNING
    configure_logging(1, 0)
    assert logging.getLogger("lensarray").level == logging.DEBUG
    configure_logging(0, 0)


def test_library_code_has_no_print_and_no_pyplot():
    lib = ROOT / "lensarray"
    offenders = []
    for path in lib.rglob("*.py"):
        if path.parts[-2] == "commands" or path.name == "cli.py":
            continue
        text = path.read_text()
        for needle in ("print(", "matplotlib.use(", "import matplotlib.pyplot", "from matplotlib import pyplot"):
            if needle in text:
                offenders.append((str(path.relative_to(ROOT)), needle))
    assert not offenders


def test_reports_and_plots_leave_the_matplotlib_backend_alone(tmp_path):
    """A notebook's backend survives writing every figure lensarray makes."""
    code = """
import matplotlib
matplotlib.use("svg")
from lensarray.diagnostics.experiments import run_experiment, write_experiment
from lensarray.commands.evaluate import plot_completeness
res = run_experiment("reff", n_points=2, supersample=2)
write_experiment(res, {out!r})
rows = [{{"lo": 0.0, "hi": 1.0, "completeness": 0.5, "auc": 0.6}}]
plot_completeness({{"by_theta_e": rows, "by_psf": rows, "by_arc_snr": rows, "fpr": 0.01}}, __import__("pathlib").Path({out!r}) / "c.png", "t")
import sys
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
print("ok")
""".format(out=str(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_anchor_bootstrap_is_blockwise_with_the_same_values_and_flat_memory():
    from lensarray.diagnostics import anchors

    rng = np.random.default_rng(1)
    hosts, anch = rng.lognormal(0, 1, 5000), rng.lognormal(0.1, 1, 300)
    blocked = anchors.compare_brightness(hosts, anch, n_boot=200, seed=4)
    # the one-shot draw it replaces, on the same stream
    r = np.random.default_rng(4)
    boots = np.median(r.choice(hosts, (200, hosts.size)), axis=1) / np.median(r.choice(anch, (200, anch.size)), axis=1)
    assert blocked["ratio_ci95"] == [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]
    # memory: 50k hosts x 1000 resamples took 1.08 GiB in one draw; now a few blocks of 8 MiB
    big = rng.lognormal(0, 1, 50_000)
    tracemalloc.start()
    anchors.compare_brightness(big, anch, n_boot=1000, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100 * 2**20, peak / 2**20


def test_s3_commands_leave_no_unclosed_session(tmp_path, make_cfg):
    pytest.importorskip("moto")
    sys.path.insert(0, str(Path(__file__).parent))
    from _servers import make_bucket, moto_s3

    from lensarray.pipeline import build

    with moto_s3() as endpoint:
        make_bucket(endpoint, "cubes")
        build(
            make_cfg(4, shard=4, chunk=4, size=None, seed=None),
            "s3://cubes/c.zarr",
            storage_options={"endpoint_url": endpoint},
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        exe = str(Path(sys.executable).parent / "lensarray")
        for argv in (
            ["inspect", "s3://cubes/c.zarr"],
            ["verify", "s3://cubes/c.zarr", "--sample", "1", "--no-progress"],
        ):
            r = subprocess.run(
                [exe, *argv, "--endpoint-url", endpoint], capture_output=True, text=True, env=env, timeout=300
            )
            assert r.returncode == 0, r.stderr
            assert "Unclosed" not in r.stderr and "Traceback" not in r.stderr, r.stderr
        # a host cube on S3 is read with the flags' storage options (HostCube gets them)
        from lensarray.hosts.cutouts import HostCube, IngestError

        with pytest.raises(IngestError, match="not a lensarray host cube"):
            HostCube("s3://cubes/c.zarr", {"endpoint_url": endpoint}, field="--hosts")
        rng = np.random.default_rng(0)
        for i in range(3):
            np.savez(
                tmp_path / f"h{i}.npz",
                cutout=rng.normal(0, 0.01, (3, 64, 64)).astype(np.float32),
                meta_ra=10.0 + 30 * i,
                meta_dec=-5.0,
            )
        assert main(["ingest", str(tmp_path), "--out", "s3://cubes/h.zarr", "--endpoint-url", endpoint]) == 0
        assert (
            main(
                [
                    "build",
                    "--hosts",
                    "s3://cubes/h.zarr",
                    "--out",
                    "s3://cubes/r.zarr",
                    "--pairs",
                    "4",
                    "--shard-pairs",
                    "4",
                    "--chunk-pairs",
                    "4",
                    "--workers",
                    "0",
                    "--no-progress",
                    "--endpoint-url",
                    endpoint,
                ]
            )
            == 0
        )
        assert HostCube("s3://cubes/h.zarr", {"endpoint_url": endpoint}).n_hosts == 3


def test_closing_s3_sessions_survives_a_dead_weak_proxy():
    """close_s3_sessions scans gc objects; a weakref.proxy whose referent died raises ReferenceError
    on isinstance, which must not fail the command (it did, depending on what a test run left)."""
    import gc
    import weakref

    import s3fs  # noqa: F401  (the scan runs only once s3fs is imported)

    from lensarray.storage import close_s3_sessions

    class Gone:
        pass

    obj = Gone()
    proxy = weakref.proxy(obj)
    del obj
    gc.collect()
    close_s3_sessions()
    assert proxy is not None  # kept alive (dead) through the scan


@pytest.mark.parametrize(("env", "want"), [(None, "False"), ("1", "True")])
def test_the_command_process_turns_off_numpys_hugepage_advice_unless_the_user_set_it(env, want):
    """The ``lensarray`` command's process gets NUMPY_MADVISE_HUGEPAGE=0, as its workers do, set
    before numpy is imported (numpy reads it once, at import); a user's own value is kept."""
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env is not None:
        environ["NUMPY_MADVISE_HUGEPAGE"] = env
    code = "import lensarray.cli, numpy; print(numpy._core.multiarray._get_madvise_hugepage())"
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == want
