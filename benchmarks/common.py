"""Shared helpers for the benchmark scripts: machine facts, a peak-RSS sampler over a process
tree, JSON + table output."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import numpy as np
    import scipy

    info = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "machine": platform.machine(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", ""),
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for d in threadpool_info()
        ]
    except ImportError:
        pass
    info["fft"] = "scipy.fft (pocketfft)"
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    return info


class PeakRSS:
    """Sample the RSS of this process and all its children every ``interval`` s: ``peak`` (their
    sum), ``peak_self`` (this process) and ``peak_child`` (the largest single child), bytes.

    The process tree is re-listed every ``rescan`` s only: listing children walks every
    process's /proc entry, and at 20 listings a second that alone took ~5% of a core from the
    processes being measured (py-spy on the million-pair build's client)."""

    def __init__(self, interval: float = 0.05, rescan: float = 1.0):
        self.interval = interval
        self.rescan = rescan
        self.peak = self.peak_self = self.peak_child = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        procs: list = [me]
        listed = -float("inf")
        while not self._stop.is_set():
            now = time.monotonic()
            if now - listed >= self.rescan:
                try:
                    procs = [me, *me.children(recursive=True)]
                except psutil.Error:
                    pass
                listed = now
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                if p.pid == me.pid:
                    self.peak_self = max(self.peak_self, rss)
                else:
                    self.peak_child = max(self.peak_child, rss)
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=float))
    return path


def table(rows: list[dict], cols: list[str]) -> str:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, widths, strict=True)))
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
