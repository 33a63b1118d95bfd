"""Where a build's worker CPU goes: the shard task's own thread against the rest of the process.

On a LocalCluster of ``--workers`` x 1 thread (``lensarray.cluster.local_cluster``, the build's
worker environment): a warm-up build of 512 pairs (imports, numba), then a build of ``--pairs``
pairs (quantised by default: ``[quantize]`` host, arc 12 bits) during which every worker times
each fused shard task (``store._render_and_write_shard_task``, wrapped in the workers before the
build) in three clocks: the task thread's own CPU (``time.thread_time``), the CPU of the whole
worker process over the task (``time.process_time``: every thread, user + system) and wall
time; plus each worker's user/system CPU and minor page faults over the build, the scheduler's
and client's CPU, and Python's garbage-collector runs in the workers during the build (count and
thread CPU per generation).

``task_other_threads`` = process - thread CPU over the tasks: zarr's I/O threads (its
``asyncio.to_thread`` file writes, kernel time), the worker's event loop and profiler.

    python benchmarks/bench_build_threads.py [--pairs 10000] [--lossless] [--name build_threads]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))

from common import write  # noqa: E402


def _usage() -> tuple[float, float, int, int]:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt, os.getpid()


def _instrument() -> bool:
    """In a worker: time every fused shard task and every garbage collection from now on."""
    import functools
    import gc

    import lensarray.store as store

    task = store._render_and_write_shard_task
    acc = {"thread": 0.0, "process": 0.0, "wall": 0.0, "tasks": 0, "pairs": 0}
    gcs = {"runs": [0, 0, 0], "thread_s": [0.0, 0.0, 0.0], "t0": 0.0}

    @functools.wraps(task)
    def timed(render, url, storage_options, shard_index, start, stop, *rest):
        t0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
        out = task(render, url, storage_options, shard_index, start, stop, *rest)
        acc["thread"] += time.thread_time() - t0
        acc["process"] += time.process_time() - p0
        acc["wall"] += time.perf_counter() - w0
        acc["tasks"] += 1
        acc["pairs"] += stop - start
        return out

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gcs["t0"] = time.thread_time()
        else:
            g = info["generation"]
            gcs["runs"][g] += 1
            gcs["thread_s"][g] += time.thread_time() - gcs["t0"]

    store._render_and_write_shard_task = timed  # resolved by name when a task is unpickled
    gc.callbacks.append(on_gc)
    # kept on a module of the worker: client.run sends this script's functions by value
    store.__dict__["_bench_threads"] = (acc, gcs)
    return True


def _collected() -> dict:
    import lensarray.store as store

    acc, gcs = store.__dict__["_bench_threads"]
    return {"tasks": dict(acc), "gc": {"runs": list(gcs["runs"]), "thread_s": list(gcs["thread_s"])}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lossless", action="store_true", help="build lossless instead of quantised")
    ap.add_argument("--name", default="build_threads", help="results/<name>.json")
    args = ap.parse_args(argv)
    from distributed import Client

    from lensarray.cluster import local_cluster
    from lensarray.config import RunConfig
    from lensarray.pipeline import build

    over = {} if args.lossless else {"quantize.host": True, "quantize.arc_keepbits": 12}
    cfg = RunConfig().replace(**{"run.n_pairs": args.pairs, **over}).validate()
    root = tempfile.mkdtemp(prefix="lensarray-threads-")
    try:
        with (
            local_cluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as lc,
            Client(lc) as client,
        ):
            build(cfg.replace(**{"run.n_pairs": 512}), os.path.join(root, "warm.zarr"), client=client)
            client.run(_instrument)
            w0, s0, c0 = client.run(_usage), client.run_on_scheduler(_usage), _usage()
            t0 = time.perf_counter()
            build(cfg, os.path.join(root, "cube.zarr"), client=client)
            seconds = time.perf_counter() - t0
            w1, s1, c1 = client.run(_usage), client.run_on_scheduler(_usage), _usage()
            per_worker = client.run(_collected)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = args.pairs
    tasks = [v["tasks"] for v in per_worker.values()]
    pairs = sum(t["pairs"] for t in tasks)
    thread, process, wall = (1e3 * sum(t[k] for t in tasks) / pairs for k in ("thread", "process", "wall"))
    gc_runs = [sum(v["gc"]["runs"][g] for v in per_worker.values()) for g in range(3)]
    gc_ms = 1e3 * sum(sum(v["gc"]["thread_s"]) for v in per_worker.values()) / n
    out = {
        "pairs": n,
        "storage": "lossless" if args.lossless else "quantized",
        "seconds": seconds,
        "pairs_per_s": n / seconds,
        "task_thread_cpu_ms_per_pair": thread,
        "task_process_cpu_ms_per_pair": process,
        "task_other_threads_cpu_ms_per_pair": process - thread,
        "task_wall_ms_per_pair": wall,
        "workers_user_ms_per_pair": 1e3 * sum(w1[k][0] - w0[k][0] for k in w0) / n,
        "workers_sys_ms_per_pair": 1e3 * sum(w1[k][1] - w0[k][1] for k in w0) / n,
        "workers_minflt_per_pair": sum(w1[k][2] - w0[k][2] for k in w0) / n,
        # a LocalCluster's scheduler runs in the client's process: then one figure for both
        **(
            {"client_and_scheduler_cpu_ms_per_pair": 1e3 * (c1[0] - c0[0] + c1[1] - c0[1]) / n}
            if s0[3] == c0[3]
            else {
                "scheduler_cpu_ms_per_pair": 1e3 * (s1[0] - s0[0] + s1[1] - s0[1]) / n,
                "client_cpu_ms_per_pair": 1e3 * (c1[0] - c0[0] + c1[1] - c0[1]) / n,
            }
        ),
        "worker_gc_runs_by_generation": gc_runs,
        "worker_gc_thread_cpu_ms_per_pair": gc_ms,
    }
    for k, v in out.items():
        print(f"{k:40s} {v:.4g}" if isinstance(v, float) else f"{k:40s} {v}")
    path = write(args.name, out)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
