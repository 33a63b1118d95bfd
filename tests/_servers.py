"""Real servers for tests: a local S3 (moto server mode) and a Dask scheduler with workers as
separate processes, all on 127.0.0.1 with free ports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


@contextmanager
def moto_s3(monkeypatch=None):
    """Yield the endpoint URL of a real local S3 server (dummy credentials set in the env)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing-key-id",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-value",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield f"http://{host}:{port}"
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)


class DaskProcesses:
    """``dask scheduler`` + N ``dask worker`` processes; kill one with :meth:`kill_worker`."""

    def __init__(self, n_workers: int, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        sched_log = log_dir / "scheduler.log"
        self.scheduler = self._spawn(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"], sched_log
        )
        self.address = self._wait_for(sched_log, r"Scheduler at:\s+(tcp://[\d.:]+)")
        for i in range(n_workers):
            log = log_dir / f"worker{i}.log"
            w = self._spawn(
                [
                    str(BIN / "dask"),
                    "worker",
                    self.address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                ],
                log,
            )
            self.workers.append(w)
        for i in range(n_workers):
            self._wait_for(log_dir / f"worker{i}.log", r"Registered to:")

    def _spawn(self, cmd, log: Path) -> subprocess.Popen:
        fh = open(log, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(p)
        return p

    @staticmethod
    def _wait_for(log: Path, pattern: str, timeout: float = 60.0) -> str:
        t0 = time.time()
        while time.time() - t0 < timeout:
            text = log.read_text() if log.exists() else ""
            m = re.search(pattern, text)
            if m:
                return m.group(1) if m.groups() else m.group(0)
            time.sleep(0.2)
        raise TimeoutError(f"{pattern!r} not seen in {log} within {timeout} s:\n{log.read_text()[-2000:]}")

    def kill_worker(self, i: int = 0) -> None:
        os.killpg(self.workers[i].pid, signal.SIGKILL)
        self.workers[i].wait(10)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def sigkill_after_shards(proc: subprocess.Popen, out, shards: int = 2, timeout: float = 180.0):
    """SIGKILL the build ``proc`` (started with ``start_new_session=True``) once ``shards`` shards
    of the cube at ``out`` are done; returns the done markers after the kill."""
    from lensarray.store import completed_shards, open_group

    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if completed_shards(open_group(str(out), mode="r")).sum() >= shards:
                break
        except Exception:  # the store is still being created
            pass
        if proc.poll() is not None:
            raise AssertionError(f"build ended before it could be killed: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    return completed_shards(open_group(str(out), mode="r"))
