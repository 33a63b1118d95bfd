"""The million-pair build: build, diagnose and the training loader on one cube, with the numbers
the cost model in README.md predicts printed next to the measured ones.

    python benchmarks/bench_million.py --pairs 1000000 --quantize --confirm-large   # ~42 GB on disk
    python benchmarks/bench_million.py --pairs 2000 --quantize                      # a dry run
    python benchmarks/bench_million.py --pairs 2000 --s3                            # to a local moto S3

Steps: a 512-pair pilot build measures bytes/pair; the run refuses to start if the predicted
size exceeds 90% of the free disk (local) or ``--s3-max-gb`` (moto keeps objects in memory, so
S3 runs are for small sizes); then the build on a LocalCluster (``--workers`` x 1 thread) with
peak RSS of all processes, bytes on disk, ``verify`` on a sample, ``diagnose`` (LR subsample
``--lr-pairs``, ``--n-boot`` bootstraps), and one loader epoch over ``--loader-pairs`` pairs
(the first shards). Sizes above 200,000 pairs need ``--confirm-large``: they take hours on a
2-core machine and must not run on a shared one. JSON in results/<name>.json, rewritten after
every step (a run stopped later keeps what it measured).

``--build-budget SECONDS`` stops the build after that long (the shards in flight finish): the
cube is then incomplete, and the largest completed size, the measured rate and the
extrapolation to ``--pairs`` are reported; verify, diagnose and the loader run on the built
shards. Render-only throughput (the arc kernel alone, as in ``bench_build_throughput.py``) is
measured on the same cluster before and after the build, for the build / render-only ratio at
this size. A progress line (shards, pairs/s, load average) is printed every ``--log-every``
shards.
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

SHARD = 256
LARGE = 200_000


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _cfg(n: int, quantize: bool, shard: int):
    from lensarray.config import RunConfig

    over = {"quantize.host": True, "quantize.arc_keepbits": 12} if quantize else {}
    return (
        RunConfig()
        .replace(**{"run.n_pairs": n, "run.shard_pairs": shard, "run.chunk_pairs": 16, "cluster.kind": "none", **over})
        .validate()
    )


def pilot_bytes_per_pair(root: str, quantize: bool) -> float:
    from lensarray.pipeline import build

    url = os.path.join(root, "pilot.zarr")
    build(_cfg(512, quantize, SHARD), url, progress=False)
    b = _du(url) / 512
    shutil.rmtree(url)
    return b


class _BudgetReached(Exception):
    """Raised from the shard callback to stop a build at its time budget."""


def _settled_done(url: str, storage_options: dict | None) -> int:
    """Shards done once the writes still in flight after a stop have landed (polled until stable)."""
    from lensarray.store import completed_shards, open_group

    last = -1
    while True:
        done = int(completed_shards(open_group(url, storage_options, mode="r")).sum())
        if done == last:
            return done
        last = done
        time.sleep(3.0)


def run(args, root: str, url: str, storage_options: dict | None) -> dict:
    from bench_build_throughput import _shard_params, cpu_seconds, render_only_rate
    from distributed import Client

    from lensarray.cluster import local_cluster
    from lensarray.commands.verify import verify_store
    from lensarray.cube import open_cube
    from lensarray.diagnostics import diagnose
    from lensarray.pipeline import build
    from lensarray.training import batches

    cfg = _cfg(args.pairs, args.quantize, args.shard)
    out: dict = {"pairs": args.pairs, "quantized": args.quantize, "s3": bool(storage_options), "workers": args.workers}
    with (
        local_cluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        shards = _shard_params(args.render_pairs, cfg)
        render_only_rate(client, shards[:2], cfg)  # warm the workers (numba load, imports)
        out["render_only_before"], out["render_only_per_cpu_s_before"] = render_only_rate(client, shards, cfg)
        out["load_before"] = os.getloadavg()
        write(args.name, out)
        n_shards = -(-args.pairs // args.shard)
        count = 0
        t0, c0 = time.perf_counter(), cpu_seconds()
        t_first = t_last = t0

        def landed(i: int) -> None:
            nonlocal count, t_first, t_last
            count += 1
            t_last = time.perf_counter()
            if count == 1:
                t_first = t_last  # planning (split plan over every pair, on the client) ends before it
            elapsed = t_last - t0
            if count % args.log_every == 0 or count == n_shards:
                print(
                    f"[{time.strftime('%H:%M:%S')}] {count}/{n_shards} shards, {count * args.shard / elapsed:.1f} "
                    f"pairs/s, load {' '.join(f'{v:.1f}' for v in os.getloadavg())}",
                    flush=True,
                )
            if args.build_budget and elapsed > args.build_budget:
                raise _BudgetReached

        with PeakRSS() as mem:
            try:
                build(cfg, url, client=client, progress=False, storage_options=storage_options, on_shard_done=landed)
                stopped = False
            except _BudgetReached:
                stopped = True
            out["build_s"] = time.perf_counter() - t0
            out["build_cpu_s"] = cpu_seconds() - c0  # all processes: client + scheduler, nannies, workers
            out["shards_landed_when_stopped"], out["until_first_shard_s"] = count, t_first - t0
            write(args.name, out)  # before the restart: under heavy load it may time out and end the run
            if stopped:  # the writes still queued would go on: kill them (a shard cut mid-write has no marker)
                client.restart(wait_for_workers=True, timeout=600)
            done = _settled_done(url, storage_options) if stopped else n_shards
        out["build_stopped_at_budget"] = stopped
        out["load_after_build"] = os.getloadavg()
        out["shards_done"], out["shards_total"] = done, n_shards
        out["pairs_done"] = min(args.pairs, done * args.shard)
        # pairs landed by the time the build call returned (the ones in flight land after the clock stops)
        out["build_pairs_per_s"] = (args.pairs if not stopped else count * args.shard) / out["build_s"]
        out["extrapolated_build_s_for_all_pairs"] = args.pairs / out["build_pairs_per_s"]
        out["until_first_shard_s"] = t_first - t0
        if count > 1:  # steady state: between the first and the last shard landed
            out["steady_pairs_per_s"] = (count - 1) * args.shard / (t_last - t_first)
            out["extrapolated_steady_s_for_all_pairs"] = (
                out["until_first_shard_s"] + args.pairs / out["steady_pairs_per_s"]
            )
            out["steady_over_render_only_before"] = out["steady_pairs_per_s"] / out["render_only_before"]
        out["build_peak_rss_mib"] = mem.peak / 2**20
        out["build_peak_largest_worker_mib"] = mem.peak_child / 2**20
        render_only_rate(client, shards[:2], cfg)  # (re)warm: workers restarted after a stop
        out["render_only_after"], out["render_only_per_cpu_s_after"] = render_only_rate(client, shards, cfg)
        out["render_only_stamps_per_s"] = (out["render_only_before"] + out["render_only_after"]) / 2
        out["build_over_render_only"] = out["build_pairs_per_s"] / out["render_only_stamps_per_s"]
        # per CPU second of all processes: the ratio a shared machine's load moves least
        render_cpu = (out["render_only_per_cpu_s_before"] + out["render_only_per_cpu_s_after"]) / 2
        if not stopped:
            out["build_pairs_per_cpu_s"] = args.pairs / out["build_cpu_s"]
            out["build_over_render_only_cpu"] = out["build_pairs_per_cpu_s"] / render_cpu
        if not storage_options:
            out["bytes_per_pair"] = _du(url) / out["pairs_done"]
        write(args.name, out)
        t0 = time.perf_counter()
        problems = verify_store(url, storage_options, sample=8, progress=False)
        # an incomplete cube lists its unbuilt shards; every other line is a real problem
        out["verify_s"] = time.perf_counter() - t0
        out["verify_problems"] = [p for p in problems if "not complete (no done marker)" not in p]
        write(args.name, out)
        with PeakRSS() as mem_d:
            t0 = time.perf_counter()
            res, _ = diagnose(
                open_cube(url, storage_options=storage_options, allow_incomplete=stopped),
                progress=False,
                n_boot=args.n_boot,
                max_lr_pairs=args.lr_pairs,
            )
            out["diagnose_s"] = time.perf_counter() - t0
        out["diagnose_peak_rss_mib"] = mem_d.peak / 2**20
        out["diagnose_passed"] = res["passed"]
        out["core_lr_auc"], out["core_lr_ci"] = res["core_lr"]["auc"], res["core_lr"]["ci"]
        write(args.name, out)
    from lensarray.store import completed_shards, open_group

    built = [int(i) for i in np.flatnonzero(completed_shards(open_group(url, storage_options, mode="r")))]
    loader_shards = built[: max(1, min(args.loader_pairs, out["pairs_done"]) // args.shard)]
    # a complete cube is read straight from zarr; an incomplete one (a build stopped at its budget)
    # only through open_cube(allow_incomplete=True), the xarray path of the loader
    source = (
        url
        if not out["build_stopped_at_budget"]
        else open_cube(url, storage_options=storage_options, allow_incomplete=True)
    )
    out["loader_path"] = "zarr" if isinstance(source, str) else "xarray (incomplete cube)"
    t0 = time.perf_counter()
    count = 0
    for b in batches(
        source,
        None,
        batch_size=256,
        seed=0,
        augment=(),
        shuffle_buffer=2048,
        storage_options=storage_options,
        shards=loader_shards if isinstance(source, str) else None,
    ):
        count += len(b["labels"])
        if count >= args.loader_pairs:
            break
    out["loader_stamps"] = count
    out["loader_stamps_per_s"] = count / (time.perf_counter() - t0)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--quantize", action="store_true", help="[quantize] host (0.2 sigma) and arc 12 bits")
    ap.add_argument("--s3", action="store_true", help="write to a local moto S3 server instead of local disk")
    ap.add_argument(
        "--s3-max-gb", type=float, default=4.0, help="refuse S3 runs predicted above this (moto is in memory)"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard", type=int, default=SHARD)
    ap.add_argument("--lr-pairs", type=int, default=20000)
    ap.add_argument("--n-boot", type=int, default=50)
    ap.add_argument("--loader-pairs", type=int, default=50_000)
    ap.add_argument(
        "--build-budget", type=float, default=0.0, help="stop the build after this many seconds (0: build every pair)"
    )
    ap.add_argument("--log-every", type=int, default=50, help="progress line every this many shards")
    ap.add_argument("--render-pairs", type=int, default=2560, help="stamps per render-only measurement")
    ap.add_argument("--root", help="directory for the local cube (default: a temporary one, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the cube")
    ap.add_argument("--confirm-large", action="store_true", help=f"allow more than {LARGE:,} pairs")
    ap.add_argument("--name", default="million", help="results/<name>.json")
    args = ap.parse_args(argv)
    if args.pairs > LARGE and not args.confirm_large:
        ap.error(
            f"--pairs = {args.pairs}: above {LARGE:,} needs --confirm-large (hours of both cores; "
            "never on a shared machine)"
        )
    root = args.root or tempfile.mkdtemp(prefix="lensarray-million-")
    os.makedirs(root, exist_ok=True)
    try:
        bpp = pilot_bytes_per_pair(root, args.quantize)
        predicted_gb = bpp * args.pairs / 1e9
        print(f"pilot: {bpp / 1e3:.1f} kB/pair -> {predicted_gb:.1f} GB for {args.pairs:,} pairs", flush=True)
        if args.s3:
            if predicted_gb > args.s3_max_gb:
                ap.error(
                    f"--s3: predicted {predicted_gb:.1f} GB > --s3-max-gb {args.s3_max_gb} (moto keeps objects in memory)"
                )
            from _servers import make_bucket, moto_s3

            with moto_s3() as endpoint:
                make_bucket(endpoint, "million")
                result = run(args, root, "s3://million/cube.zarr", {"endpoint_url": endpoint})
        else:
            free_gb = shutil.disk_usage(root).free / 1e9
            if predicted_gb > 0.9 * free_gb:
                ap.error(
                    f"predicted {predicted_gb:.1f} GB > 90% of the {free_gb:.1f} GB free under {root}: "
                    "use --quantize, another --root, or fewer --pairs"
                )
            result = run(args, root, os.path.join(root, "cube.zarr"), None)
        result["pilot_bytes_per_pair"] = bpp
        result["predicted_gb"] = predicted_gb
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(table([result], [k for k in result if k not in ("verify_problems", "core_lr_ci")]))
    path = write(args.name, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
