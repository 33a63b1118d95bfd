"""Build memory alone: peak RSS per process (client + in-process scheduler, each worker) of one
``build`` in a fresh process and a fresh LocalCluster per size, against distributed's default
worker malloc settings.

    python benchmarks/bench_build_memory.py --sizes 10000 40000 200000 [--default-malloc]

Run each size in its own process (as the loop below does) so that no earlier work inflates it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from common import PeakRSS, table, write  # noqa: E402


def _one(n: int, default_malloc: bool, root: str) -> dict:
    from distributed import Client, LocalCluster

    from lensarray.cluster import local_cluster
    from lensarray.config import RunConfig
    from lensarray.pipeline import build

    make = LocalCluster if default_malloc else local_cluster
    with make(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, Client(lc) as client:
        url = os.path.join(root, f"mem{n}.zarr")
        cfg = RunConfig().replace(**{"run.n_pairs": n, "run.shard_pairs": 256, "run.chunk_pairs": 16}).validate()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            build(cfg, url, client=client, progress=False)
            seconds = time.perf_counter() - t0
    shutil.rmtree(url, ignore_errors=True)
    return {
        "pairs": n,
        "malloc": "distributed default" if default_malloc else "lensarray workers",
        "build_pairs_per_s": n / seconds,
        "peak_total_mib": mem.peak / 2**20,
        "peak_client_mib": mem.peak_self / 2**20,
        "peak_largest_worker_mib": mem.peak_child / 2**20,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    ap.add_argument("--default-malloc", action="store_true", help="also measure distributed's default")
    ap.add_argument("--name", default="build_memory", help="results/<name>.json")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:  # child mode: one measurement, JSON on stdout
        print(json.dumps(_one(args.one, args.default_malloc, args.root)))
        return {}
    root = tempfile.mkdtemp(prefix="lensarray-mem-")
    rows = []
    try:
        for default in [False, True] if args.default_malloc else [False]:
            for n in args.sizes:
                cmd = [sys.executable, __file__, "--one", str(n), "--root", root] + (
                    ["--default-malloc"] if default else []
                )
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                print(table(rows[-1:], list(rows[-1])), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(rows, list(rows[0])))
    path = write(args.name, {"rows": rows})
    print(f"wrote {path}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
