"""Graph construction of ``lensarray.lazy_cube`` (issue #10: 10^6 pairs in < 2 s and < 300 MiB).

Measures, in one fresh process per size, the wall time of ``lazy_cube(cfg)`` split into planning
(the eager split plan over all pairs; ``--no-plan`` skips it and builds the graph from a plan
without splits, which costs the same) and graph construction (the blockwise ``map_blocks``
layers), the number of tasks, and the peak RSS increase over the process's baseline after
imports. ``--compare-xarray`` also times the same graph made with ``xarray.map_blocks`` (which
builds it block by block in Python), in the same process, for a ratio. Nothing is rendered.
Prints JSON and a table.

    python benchmarks/bench_lazy_graph.py --sizes 100000 1000000 [--shard-pairs 256] [--no-plan]
"""

from __future__ import annotations

import argparse
import json
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


def _one(n: int, shard: int, do_plan: bool, compare: bool) -> dict:
    import resource
    import time

    import lensarray  # noqa: F401 (imports outside the measurement)
    from lensarray import pipeline
    from lensarray.config import RunConfig

    cfg = RunConfig().replace(**{"run.n_pairs": n, "run.shard_pairs": shard, "run.chunk_pairs": 16,
                                 "cluster.kind": "none"}).validate()
    # warm the imports the graph code makes on first use (dask.array, xarray internals)
    pipeline._lazy_from_plan(cfg.replace(**{"run.n_pairs": shard}), pipeline.BuildPlan(config_json=cfg.to_json()))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    plan = pipeline.plan_build(cfg) if do_plan else pipeline.BuildPlan(config_json=cfg.to_json())
    t1 = time.perf_counter()
    rss_plan = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ds = pipeline._lazy_from_plan(cfg, plan)
    t2 = time.perf_counter()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"n_pairs": n, "shard_pairs": shard, "blocks": len(ds["host"].chunks[0]),
           "plan_s": round(t1 - t0, 3) if do_plan else None, "graph_s": round(t2 - t1, 3),
           "peak_rss_increase_mib": round(rss1 - rss_plan, 1),
           "plan_rss_increase_mib": round(rss_plan - rss0, 1) if do_plan else None}
    if compare:
        t3 = time.perf_counter()
        _xarray_map_blocks(cfg, plan, shard)
        row["xarray_map_blocks_s"] = round(time.perf_counter() - t3, 3)
        row["speedup_vs_xarray"] = round(row["xarray_map_blocks_s"] / max(row["graph_s"], 1e-9), 1)
    row["tasks"] = len(ds.__dask_graph__())  # materialises the graph: after the measurements
    return row


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--shard-pairs", type=int, default=256)
    p.add_argument("--no-plan", action="store_true", help="skip the split planning (graph construction only)")
    p.add_argument("--compare-xarray", action="store_true", help="also time xarray.map_blocks on the same graph")
    p.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._child:
        print(json.dumps(_one(a._child, a.shard_pairs, not a.no_plan, a.compare_xarray)))
        return []
    rows = []
    for n in a.sizes:  # a fresh process per size: peak RSS is per process
        cmd = [sys.executable, __file__, "--_child", str(n), "--shard-pairs", str(a.shard_pairs)]
        cmd += ["--no-plan"] if a.no_plan else []
        cmd += ["--compare-xarray"] if a.compare_xarray else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(json.dumps(rows, indent=1))
    cols = ["n_pairs", "blocks", "tasks", "plan_s", "graph_s", "peak_rss_increase_mib", "xarray_map_blocks_s",
            "speedup_vs_xarray"]
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))
    return rows


if __name__ == "__main__":
    main()
