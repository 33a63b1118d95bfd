"""End to end on the local cluster: build, diagnose, training loader, S3 vs local disk.

For each N: build on a LocalCluster (2 workers x 1 thread), pairs/s, peak RSS of all processes,
bytes on disk per pair; diagnose seconds and peak RSS against a raw read of the same arrays;
loader stamps/s (shuffled batches) against a plain sequential read of the same shards; S3 (local
moto server) against local disk for a build and a read of one size.

    python benchmarks/bench_pipeline.py --sizes 2000 10000 [--s3-size 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import numpy as np  # noqa: E402
from common import PeakRSS, table, write  # noqa: E402


def _arr(group, name: str):
    """The zarr array ``name`` of a cube's group (a cube's variables are arrays, never groups)."""
    import zarr

    node = group[name]
    assert isinstance(node, zarr.Array), name
    return node


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _cfg(n: int, **over):
    from lensarray.config import RunConfig

    return RunConfig().replace(**{"run.n_pairs": n, "run.shard_pairs": 256, "run.chunk_pairs": 16, **over}).validate()


def bench_size(n: int, root: str, client) -> dict:
    from lensarray.cube import open_cube
    from lensarray.diagnostics import diagnose
    from lensarray.pipeline import build
    from lensarray.store import open_group
    from lensarray.training import batches

    url = os.path.join(root, f"cube{n}.zarr")
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        build(_cfg(n), url, client=client, progress=False)
        t_build = time.perf_counter() - t0
    size = _du(url)
    # raw read: every stored array, shard by shard, straight from zarr
    g = open_group(url, mode="r")
    t0 = time.perf_counter()
    for a in range(0, n, 256):
        for name in ("host", "invvar", "arc", "maskbits"):
            np.asarray(_arr(g, name)[a : a + 256])
    t_raw = time.perf_counter() - t0
    with PeakRSS() as mem_d:
        t0 = time.perf_counter()
        diagnose(open_cube(url), progress=False, n_boot=50)
        t_diag = time.perf_counter() - t0
    # the streaming part of diagnose alone: the one pass over every pixel (per-pair table)
    from lensarray.diagnostics import pair_table

    t0 = time.perf_counter()
    pair_table(open_cube(url), progress=False)
    t_pass = time.perf_counter() - t0
    # loader: shuffled batches vs sequential read of the same image shards (host + arc)
    t0 = time.perf_counter()
    count = 0
    for b in batches(url, None, batch_size=256, seed=0, augment=(), shuffle_buffer=2048):
        count += len(b["labels"])
    t_loader = time.perf_counter() - t0
    t0 = time.perf_counter()
    for a in range(0, n, 256):
        h = np.asarray(_arr(g, "host")[a : a + 256])
        x = np.asarray(_arr(g, "arc")[a : a + 256])
        np.concatenate([h + x, h])
    t_seq = time.perf_counter() - t0
    return {
        "pairs": n,
        "build_s": t_build,
        "build_pairs_per_s": n / t_build,
        "build_peak_rss_mib": mem.peak / 2**20,
        "bytes_per_pair": size / n,
        "raw_read_s": t_raw,
        "diagnose_s": t_diag,
        "diagnose_vs_raw_read": t_raw / t_diag,
        "diagnose_peak_rss_mib": mem_d.peak / 2**20,
        "pixel_pass_s": t_pass,
        "pixel_pass_vs_raw_read": t_raw / t_pass,
        "loader_stamps_per_s": count / t_loader,
        "sequential_stamps_per_s": 2 * n / t_seq,
        "loader_vs_sequential": (count / t_loader) / (2 * n / t_seq),
    }


def bench_s3(n: int, root: str) -> dict:
    from _servers import make_bucket, moto_s3

    from lensarray.cube import open_cube
    from lensarray.pipeline import build

    out = {}
    with moto_s3() as endpoint:
        make_bucket(endpoint, "bench")
        so = {"endpoint_url": endpoint}
        for where, url, opts in (("local", os.path.join(root, "s3cmp.zarr"), None), ("s3", "s3://bench/c.zarr", so)):
            t0 = time.perf_counter()
            build(_cfg(n, **{"cluster.kind": "none"}), url, progress=False, storage_options=opts)
            out[f"{where}_build_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            ds = open_cube(url, storage_options=opts)
            for name in ("host", "arc", "invvar"):
                ds[name].load()
            out[f"{where}_read_s"] = time.perf_counter() - t0
    out["s3_vs_local_build"] = out["s3_build_s"] / out["local_build_s"]
    out["s3_vs_local_read"] = out["s3_read_s"] / out["local_read_s"]
    out["pairs"] = n
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--s3-size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--name", default="pipeline", help="results/<name>.json")
    args = ap.parse_args(argv)
    from distributed import Client

    from lensarray.cluster import local_cluster

    root = tempfile.mkdtemp(prefix="lensarray-bench-")
    rows = []
    try:
        for n in args.sizes:
            # fresh workers per size: a row's peak memory is that size's, not the history's
            with (
                local_cluster(
                    n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
                ) as lc,
                Client(lc) as client,
            ):
                rows.append(bench_size(n, root, client))
            print(table(rows[-1:], list(rows[-1])), flush=True)
            shutil.rmtree(os.path.join(root, f"cube{n}.zarr"), ignore_errors=True)  # 200k pairs = 27 GB
        s3 = bench_s3(args.s3_size, root) if args.s3_size else {}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cols = [
        "pairs",
        "build_pairs_per_s",
        "build_peak_rss_mib",
        "bytes_per_pair",
        "diagnose_s",
        "diagnose_vs_raw_read",
        "pixel_pass_vs_raw_read",
        "diagnose_peak_rss_mib",
        "loader_vs_sequential",
    ]
    print(table(rows, cols))
    if s3:
        print(
            f"S3 (local moto) vs local disk, {s3['pairs']} pairs: build x{s3['s3_vs_local_build']:.2f}, "
            f"read x{s3['s3_vs_local_read']:.2f}"
        )
    path = write(args.name, {"workers": args.workers, "rows": rows, "s3": s3})
    print(f"wrote {path}")
    return {"rows": rows, "s3": s3}


if __name__ == "__main__":
    main()
