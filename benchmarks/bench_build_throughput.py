"""Build throughput against render-only throughput, per core, in one run on one cluster.

On a LocalCluster of ``--workers`` workers x 1 thread (``lensarray.cluster.local_cluster``), for
each size N, interleaved: render-only (the arc kernel ``render_unit_arcs`` alone, one task per
shard of 256 pairs, parameters drawn on the client beforehand, output discarded) -> full build of
N pairs (hosts, params, render, derive, write, lossless; with ``--quantize`` also a quantised
build) -> render-only again. The ratio build pairs/s / render-only stamps/s is therefore measured
under the same (shared-machine) load. Also: the single-thread kernel rate in this process, peak
RSS summed over all processes (client, scheduler, workers) and the largest worker, bytes/pair.
``build_over_render_only_cpu`` is the same ratio per CPU second of all processes (client,
scheduler, workers: user + system), pairs per CPU-second over stamps per CPU-second: on a shared,
loaded machine the wall-clock render-only reference moved 2.4x between before and after one
build, the CPU-time rates do not depend on how much of the cores the run was given.

    python benchmarks/bench_build_throughput.py --sizes 10000 [200000] [--quantize]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import PeakRSS, table, write  # noqa: E402

SHARD = 256


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _cfg(n: int, **over):
    from lensarray.config import RunConfig

    return RunConfig().replace(**{"run.n_pairs": n, "run.shard_pairs": SHARD, "run.chunk_pairs": 16, **over}).validate()


def _render_only(params: dict, cfg_json: str) -> int:
    import json

    from lensarray.config import config_from_dict
    from lensarray.pipeline import _unit_arcs

    cfg = config_from_dict(json.loads(cfg_json))
    arcs, _ = _unit_arcs(params, cfg)
    return int(arcs.shape[0])


def _shard_params(n: int, cfg) -> list[dict]:
    from lensarray.hosts.synthetic import synthetic_host_properties
    from lensarray.sampling import sample_params

    out = []
    for a in range(0, n, SHARD):
        ids = np.arange(a, min(a + SHARD, n))
        out.append(sample_params(ids, cfg, synthetic_host_properties(ids, cfg)))
    return out


def cpu_by_process() -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds so far of this process ("client": the client and, for a
    LocalCluster, the scheduler) and of its children together ("workers": nannies and workers)."""
    import psutil

    me = psutil.Process()
    mine = me.cpu_times()
    out = {"client": (mine.user, mine.system), "workers": (0.0, 0.0)}
    for p in me.children(recursive=True):
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        u, s = out["workers"]
        out["workers"] = (u + t.user, s + t.system)
    return out


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (client and, for a LocalCluster, the scheduler)
    and every child process (nannies, workers) so far."""
    return sum(user + system for user, system in cpu_by_process().values())


def render_only_rate(client, shards: list[dict], cfg) -> tuple[float, float]:
    """Stamps/s of the render kernel alone on the cluster (all workers), and stamps per CPU
    second of all processes (the per-core rate that a shared machine's load does not move)."""
    from distributed import wait

    cfg_json = cfg.to_json()
    futs = [client.scatter(p, hash=False) for p in shards]  # shipped before the clock starts (fresh keys)
    wait(futs)
    t0, c0 = time.perf_counter(), cpu_seconds()
    done = client.gather([client.submit(_render_only, f, cfg_json, pure=False) for f in futs])
    return sum(done) / (time.perf_counter() - t0), sum(done) / (cpu_seconds() - c0)


def kernel_rate_here(cfg, n: int = 256) -> float:
    """Single-thread kernel stamps/s in this process (a second reference)."""
    p = _shard_params(n, cfg)[0]
    _render_only(p, cfg.to_json())
    t0 = time.perf_counter()
    _render_only(p, cfg.to_json())
    return n / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000])
    ap.add_argument("--render-pairs", type=int, default=5120, help="stamps per render-only measurement")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quantize", action="store_true", help="also build quantised ([quantize] host, arc 12 bits)")
    ap.add_argument("--name", default="build_throughput", help="results/<name>.json")
    args = ap.parse_args(argv)
    from distributed import Client

    from lensarray.cluster import local_cluster
    from lensarray.pipeline import build

    root = tempfile.mkdtemp(prefix="lensarray-thru-")
    rows = []
    kinds: list[tuple[str, dict]] = [("lossless", {})] + (
        [("quantized", {"quantize.host": True, "quantize.arc_keepbits": 12})] if args.quantize else []
    )
    try:
        for n in args.sizes:
            cfg = _cfg(n)
            shards = _shard_params(args.render_pairs, cfg)
            for kind, over in kinds:
                with (
                    local_cluster(
                        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
                    ) as lc,
                    Client(lc) as client,
                ):
                    render_only_rate(client, shards[:2], cfg)  # warm the workers (numba load, imports)
                    before, before_cpu = render_only_rate(client, shards, cfg)
                    url = os.path.join(root, f"cube{n}{kind}.zarr")
                    with PeakRSS() as mem:
                        t0, c0, p0 = time.perf_counter(), cpu_seconds(), cpu_by_process()
                        build(_cfg(n, **over), url, client=client, progress=False)
                        seconds, cpu, p1 = time.perf_counter() - t0, cpu_seconds() - c0, cpu_by_process()
                    after, after_cpu = render_only_rate(client, shards, cfg)
                here = kernel_rate_here(cfg)
                size = _du(url)
                shutil.rmtree(url, ignore_errors=True)
                render = (before + after) / 2
                rows.append(
                    {
                        "pairs": n,
                        "storage": kind,
                        "build_s": seconds,
                        "build_pairs_per_s": n / seconds,
                        "build_pairs_per_s_per_core": n / seconds / args.workers,
                        "render_only_stamps_per_s": render,
                        "render_only_per_core": render / args.workers,
                        "render_only_before": before,
                        "render_only_after": after,
                        "build_over_render_only": (n / seconds) / render,
                        "build_pairs_per_cpu_s": n / cpu,
                        "render_only_stamps_per_cpu_s": (before_cpu + after_cpu) / 2,
                        "render_only_per_cpu_s_before": before_cpu,
                        "render_only_per_cpu_s_after": after_cpu,
                        "build_over_render_only_cpu": (n / cpu) / ((before_cpu + after_cpu) / 2),
                        # where a build's CPU goes, ms per pair: client + scheduler vs workers, user vs system
                        **{
                            f"build_cpu_ms_per_pair_{who}_{kind}": 1e3 * (p1[who][j] - p0[who][j]) / n
                            for who in ("client", "workers")
                            for j, kind in enumerate(("user", "sys"))
                        },
                        "kernel_single_thread_here": here,
                        "peak_rss_mib": mem.peak / 2**20,
                        "peak_largest_worker_mib": mem.peak_child / 2**20,
                        "bytes_per_pair": size / n,
                    }
                )
                print(table(rows[-1:], list(rows[-1])), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cols = [
        "pairs",
        "storage",
        "build_pairs_per_s_per_core",
        "render_only_per_core",
        "build_over_render_only",
        "build_over_render_only_cpu",
        "peak_rss_mib",
        "peak_largest_worker_mib",
        "bytes_per_pair",
    ]
    print(table(rows, cols))
    path = write(args.name, {"workers": args.workers, "rows": rows})
    print(f"wrote {path}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
