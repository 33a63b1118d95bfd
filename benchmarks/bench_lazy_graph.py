"""Graph construction of ``lensarray.lazy_cube`` (issue #10: 10^6 pairs in < 2 s and < 300 MiB).

Measures, in one fresh process per size, the wall time of ``lazy_cube(cfg)`` split into planning
(the eager split plan over all pairs; ``--no-plan`` skips it and builds the graph from a plan
without splits, which costs the same) and graph construction (the blockwise ``map_blocks``
layers), the number of tasks, and memory: the peak RSS increase over the process's baseline
after imports during planning and over the whole ``lazy_cube`` call, and the RSS the graph keeps.
``--compare-xarray`` also times the same graph made with ``xarray.map_blocks`` (which builds it
block by block in Python), in the same process, for a ratio: that ratio is why the lazy cube is
a ``dask.array.map_blocks`` of ``render_pairs`` and not an ``xr.map_blocks``.

``--baseline-src DIR`` runs every size a second time with another lensarray tree first on the
path (e.g. ``git archive <commit> lensarray | tar -x -C DIR``), interleaved with the current one
(before, after, per size and repeat), so before/after figures come from one run on one machine
state. Wall times on a loaded machine wait for the CPU: each row also gives the process CPU time
(``*_cpu_s``) and the 1-minute load average when it started. Nothing is rendered. Prints JSON (also written to ``benchmarks/results/lazy_graph.json``)
and a table.

    python benchmarks/bench_lazy_graph.py --sizes 100000 1000000 [--shard-pairs 256] [--no-plan]
        [--baseline-src /tmp/base] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def _xarray_map_blocks(cfg, plan, block: int):
    """The same cube graph through xarray.map_blocks (reference for the ratio)."""
    import dask.array as da
    import xarray as xr

    from lensarray.cube import VARIABLES, template
    from lensarray.pipeline import render_pairs

    tmpl = template(cfg.run.n_pairs, list(cfg.run.bands), cfg.run.size, chunk_pairs=block)

    def kernel(b, plan):
        a = render_pairs(b["pair"].values, plan.cfg, plan)
        return xr.Dataset({k: (s.dims, a[k]) for k, s in VARIABLES.items()}, coords=b.coords)

    ids = xr.Dataset({"pair_id": ("pair", da.arange(cfg.run.n_pairs, chunks=block))}, coords=tmpl.coords)
    return xr.map_blocks(kernel, ids, kwargs={"plan": plan}, template=tmpl)


def _rss_now_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _one(n: int, shard: int, do_plan: bool, compare: bool) -> dict:
    import resource
    import time

    import lensarray  # noqa: F401 (imports outside the measurement)
    from lensarray import pipeline
    from lensarray.config import RunConfig

    def peak_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    cfg = (
        RunConfig()
        .replace(**{"run.n_pairs": n, "run.shard_pairs": shard, "run.chunk_pairs": 16, "cluster.kind": "none"})
        .validate()
    )
    # warm the imports the planning and graph code make on first use (dask.array, xarray
    # internals, scipy.stats, astropy-healpix) on a one-shard cube
    small = cfg.replace(**{"run.n_pairs": shard})
    pipeline._lazy_from_plan(
        small, pipeline.plan_build(small) if do_plan else pipeline.BuildPlan(config_json=small.to_json())
    )
    rss0 = peak_mib()
    load = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    plan = pipeline.plan_build(cfg) if do_plan else pipeline.BuildPlan(config_json=cfg.to_json())
    c1, t1 = time.process_time(), time.perf_counter()
    rss_plan, rss_before_graph = peak_mib(), _rss_now_mib()
    ds = pipeline._lazy_from_plan(cfg, plan)
    c2, t2 = time.process_time(), time.perf_counter()
    rss1 = peak_mib()
    chunks = ds["host"].chunks
    row: dict = {
        "n_pairs": n,
        "shard_pairs": shard,
        "blocks": len(chunks[0]) if chunks else 1,
        "plan_s": round(t1 - t0, 3) if do_plan else None,
        "graph_s": round(t2 - t1, 3),
        "lazy_cube_s": round(t2 - t0, 3),
        "plan_cpu_s": round(c1 - c0, 3) if do_plan else None,
        "lazy_cube_cpu_s": round(c2 - c0, 3),
        "load_1min": round(load, 2),
        "plan_peak_rss_increase_mib": round(rss_plan - rss0, 1) if do_plan else None,
        "lazy_cube_peak_rss_increase_mib": round(rss1 - rss0, 1),
        "graph_rss_kept_mib": round(_rss_now_mib() - rss_before_graph, 1),
    }
    if compare:
        t3 = time.perf_counter()
        _xarray_map_blocks(cfg, plan, shard)
        row["xarray_map_blocks_s"] = round(time.perf_counter() - t3, 3)
        row["speedup_vs_xarray"] = round(row["xarray_map_blocks_s"] / max(t2 - t1, 1e-9), 1)
    row["tasks"] = len(ds.__dask_graph__())  # materialises the graph: after the measurements
    return row


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--shard-pairs", type=int, default=256)
    p.add_argument("--no-plan", action="store_true", help="skip the split planning (graph construction only)")
    p.add_argument("--compare-xarray", action="store_true", help="also time xarray.map_blocks on the same graph")
    p.add_argument("--baseline-src", default="", help="directory holding another lensarray/ tree to run as 'before'")
    p.add_argument("--repeat", type=int, default=1, help="runs per size and code version (interleaved)")
    p.add_argument(
        "--json",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "lazy_graph.json"),
        help="where to write the rows ('' : nowhere)",
    )
    p.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._child:
        print(json.dumps(_one(a._child, a.shard_pairs, not a.no_plan, a.compare_xarray)))
        return []
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    versions = ([("before", os.path.abspath(a.baseline_src))] if a.baseline_src else []) + [("after", here)]
    rows = []
    for n in a.sizes:
        for _ in range(a.repeat):
            for label, src in versions:  # a fresh process per run: peak RSS is per process
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--_child",
                    str(n),
                    "--shard-pairs",
                    str(a.shard_pairs),
                ]
                cmd += ["--no-plan"] if a.no_plan else []
                cmd += ["--compare-xarray"] if a.compare_xarray else []
                env = {**os.environ, "PYTHONPATH": src}
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
                rows.append({"code": label, **json.loads(out.strip().splitlines()[-1])})
    print(json.dumps(rows, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    cols = [
        "code",
        "n_pairs",
        "blocks",
        "tasks",
        "plan_s",
        "graph_s",
        "lazy_cube_s",
        "plan_cpu_s",
        "lazy_cube_cpu_s",
        "load_1min",
        "plan_peak_rss_increase_mib",
        "lazy_cube_peak_rss_increase_mib",
        "graph_rss_kept_mib",
        "xarray_map_blocks_s",
        "speedup_vs_xarray",
    ]
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        print(" | ".join("" if r.get(c) is None else str(r[c]) for c in cols))
    if a.baseline_src:
        for n in a.sizes:
            pick = {v: [r for r in rows if r["n_pairs"] == n and r["code"] == v] for v in ("before", "after")}
            if all(pick.values()) and all(r["plan_s"] for r in pick["after"]):
                for col in ("plan_s", "plan_cpu_s", "lazy_cube_s"):
                    ratio = min(r[col] for r in pick["before"]) / min(r[col] for r in pick["after"])
                    print(f"n_pairs {n}: {col} before/after (best of each) = {ratio:.1f}x")
    return rows


if __name__ == "__main__":
    main()
