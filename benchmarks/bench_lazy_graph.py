"""Graph construction of ``lensarray.lazy_cube`` (issue #10: 10^6 pairs in < 2 s and < 300 MiB).

Measures, in one fresh process per size, the wall time of ``lazy_cube(cfg)`` split into planning
(the eager split plan over all pairs) and graph construction (template + ``xr.map_blocks``), the
number of tasks, and the peak RSS increase over the process's baseline after imports. Nothing is
rendered. Prints JSON and a table.

    python benchmarks/bench_lazy_graph.py --sizes 100000 1000000 [--shard-pairs 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def _one(n: int, shard: int) -> dict:
    import resource
    import time

    import lensarray  # noqa: F401 (imports outside the measurement)
    from lensarray import pipeline
    from lensarray.config import RunConfig

    cfg = RunConfig().replace(**{"run.n_pairs": n, "run.shard_pairs": shard, "run.chunk_pairs": 16,
                                 "cluster.kind": "none"}).validate()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    plan = pipeline.plan_build(cfg)
    t1 = time.perf_counter()
    rss_plan = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ds = pipeline._lazy_from_plan(cfg, plan)
    t2 = time.perf_counter()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_tasks = len(ds.__dask_graph__())
    return {"n_pairs": n, "shard_pairs": shard, "blocks": len(ds["host"].chunks[0]), "tasks": n_tasks,
            "plan_s": round(t1 - t0, 3), "graph_s": round(t2 - t1, 3), "lazy_cube_s": round(t2 - t0, 3),
            "peak_rss_increase_mib": round(rss1 - rss0, 1), "plan_rss_increase_mib": round(rss_plan - rss0, 1)}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--shard-pairs", type=int, default=256)
    p.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._child:
        print(json.dumps(_one(a._child, a.shard_pairs)))
        return []
    rows = []
    for n in a.sizes:  # a fresh process per size: peak RSS is per process
        out = subprocess.run([sys.executable, __file__, "--_child", str(n), "--shard-pairs", str(a.shard_pairs)],
                             capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(json.dumps(rows, indent=1))
    cols = ["n_pairs", "blocks", "tasks", "plan_s", "graph_s", "lazy_cube_s", "peak_rss_increase_mib"]
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    return rows


if __name__ == "__main__":
    main()
