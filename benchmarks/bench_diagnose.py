"""Diagnose against a raw read of the same cube, and diagnose memory against cube size.

Speed: for each N a cube is built (LocalCluster, 2 workers x 1 thread), then, interleaved and
repeated, a raw read (every stored image array, shard by shard, straight from zarr in this
process) and ``diagnose`` (fresh workers each time, so a run's memory is its own). The ratio
raw-read seconds / diagnose seconds (>= 0.5 is the goal) uses the median of the repeats of each.

Memory: peak RSS of this process plus all its children (client, scheduler, workers) during
``diagnose`` of a cube of N pairs made lazily by tiling a built cube along ``pair`` (new pair ids;
the same stored chunks are read again), so 200,000 pairs need 20x less disk than a real cube.

    python benchmarks/bench_diagnose.py --sizes 10000 50000 --memory-base 20000 --memory-sizes 20000 200000

``--ref-code DIR`` also times, interleaved in the same repeats, ``diagnose`` of the package at
``DIR`` (e.g. ``git archive <commit> lensarray | tar -x -C DIR``) in a subprocess whose workers
import it (``PYTHONPATH=DIR``): before/after ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import TYPE_CHECKING, cast

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import PeakRSS, table, write  # noqa: E402

if TYPE_CHECKING:
    import zarr

SHARD = 256


#: ``--quantize``: the quantised storage of benchmarks/README.md (~42 kB a pair instead of ~88 kB)
QUANTIZE = {"quantize.host": True, "quantize.host_step": 0.2, "quantize.arc_keepbits": 12}


def _cfg(n: int, quantize: bool = False):
    from lensarray.config import RunConfig

    over = {"run.n_pairs": n, "run.shard_pairs": SHARD, "run.chunk_pairs": 16, **(QUANTIZE if quantize else {})}
    return RunConfig().replace(**over).validate()


def _cluster(workers: int):
    from distributed import Client

    from lensarray.cluster import local_cluster

    lc = local_cluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return lc, Client(lc)


def _build(n: int, url: str, workers: int, quantize: bool = False) -> float:
    from lensarray.pipeline import build

    lc, client = _cluster(workers)
    try:
        t0 = time.perf_counter()
        build(_cfg(n, quantize), url, client=client, progress=False)
        return time.perf_counter() - t0
    finally:
        _close(client, lc)


def _raw_read(url: str, n: int, base_n: int | None = None) -> float:
    """Seconds to read every stored image array of ``n`` pairs shard by shard; with ``base_n``
    the cube at ``url`` holds ``base_n`` pairs and is read again until ``n`` are read (as the
    tiled cube diagnose reads)."""
    from lensarray.store import open_group

    g = open_group(url, mode="r")
    arrays = [cast("zarr.Array", g[name]) for name in ("host", "invvar", "arc", "maskbits")]
    t0 = time.perf_counter()
    base_n = base_n or n
    for start in range(0, n, base_n):  # tile by tile, shard by shard: the tiled cube's chunks
        for b in range(0, min(base_n, n - start), SHARD):
            for arr in arrays:
                arr[b : min(b + SHARD, base_n, n - start)]
    return time.perf_counter() - t0


def _import_pixel_pass() -> None:
    """What a worker imports (and loads from numba's cache) before its first pixel-pass task."""
    import numpy as np

    from lensarray.diagnostics import features

    spec = features.MeasureSpec(core_radius=5.0, snr_band=0, ref_band=0, pixel_scale=0.262, box=4, side=8)
    z = np.zeros((1, 1, 8, 8), np.float32)
    features._measure_block(
        z,
        z,
        z + 1,
        np.zeros((1, 8, 8), np.int32),
        np.ones(1),
        np.ones((1, 1)),
        np.array([[0, 1, 1]], np.int64),
        spec=spec,
        names=(*features._INPUTS, "pair_flags"),
        stored=(),
    )


def _diagnose(ds, workers: int, warm: bool = False) -> tuple[float, float, dict, float]:
    """Seconds of ``diagnose`` on fresh workers, peak RSS (MiB, all processes), the result, and the
    seconds the workers took to import the pixel pass first (``warm``; else 0: inside diagnose)."""
    from lensarray.diagnostics import diagnose

    with PeakRSS() as mem:
        lc, client = _cluster(workers)
        try:
            t0 = time.perf_counter()
            if warm:
                client.run(_import_pixel_pass)
            t_warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            res, _ = diagnose(ds, progress=False, n_boot=50)
            dt = time.perf_counter() - t0
        finally:
            _close(client, lc)
    res["_bench_peaks_mib"] = {"client": mem.peak_self / 2**20, "largest_child": mem.peak_child / 2**20}
    return dt, mem.peak / 2**20, res, t_warm


def _diagnose_ref(url: str, workers: int, warm: bool, ref_code: str) -> tuple[float, float]:
    """``_diagnose`` of the cube at ``url`` by the package at ``ref_code`` (a subprocess, so its
    workers import that code): seconds and the core-LR AUC."""
    import json
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.path.abspath(ref_code))
    cmd = [sys.executable, os.path.abspath(__file__), "--diagnose-only", url, "--workers", str(workers)]
    out = subprocess.run(
        cmd + (["--warm-workers"] if warm else []), env=env, check=True, capture_output=True, text=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return float(res["diagnose_s"]), float(res["core_lr_auc"])


def _close(client, lc) -> None:
    """Close a client and its cluster; on a loaded machine the nannies' shutdown can time out
    after the measurement is complete, which must not lose it."""
    for obj in (client, lc):
        try:
            obj.close()
        except (TimeoutError, OSError) as exc:
            print(
                f"warning: closing {type(obj).__name__} timed out ({type(exc).__name__}); continuing", file=sys.stderr
            )


def _tiled(url: str | None, n: int, toy: tuple[int, int] | None = None):
    import xarray as xr

    from lensarray.cube import open_cube
    from lensarray.diagnostics import toy_cube

    if toy is not None:
        base = toy_cube(toy[0], size=toy[1], seed=0, chunk_pairs=SHARD)
    elif url is not None:
        base = open_cube(url)
    else:
        raise ValueError("tiling needs a built cube (url) or a toy cube (toy)")
    k = -(-n // base.sizes["pair"])
    ds = xr.concat([base] * k, dim="pair", data_vars="all", coords="minimal", compat="override", join="override").isel(
        pair=slice(0, n)
    )
    return ds.assign_coords(pair=np.arange(n, dtype=np.int64)).assign_attrs(base.attrs)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--memory-base", type=int, default=0, help="pairs of the built cube that is tiled (0: skip)")
    ap.add_argument("--memory-sizes", type=int, nargs="*", default=[])
    ap.add_argument(
        "--memory-toy-size",
        type=int,
        default=0,
        help="tile an in-memory toy cube of --memory-base pairs with stamps of this side instead of a "
        "built cube (the per-pair table does not depend on the stamp size; the pixel pass does)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--quantize",
        action="store_true",
        help="build the speed cubes with the quantised storage (QUANTIZE: half the disk of the lossless default)",
    )
    ap.add_argument(
        "--tile-from",
        type=int,
        default=0,
        help="speed sizes above this many pairs tile a built cube of this size (the disk holds one "
        "small cube; reads of the repeats come from the page cache, for both sides)",
    )
    ap.add_argument(
        "--warm-workers",
        action="store_true",
        help="let the fresh workers import the pixel pass (and load its numba cache) before diagnose is "
        "timed; the import seconds are reported beside (10-25 s cold on a loaded machine)",
    )
    ap.add_argument("--root", default=None, help="directory for the cubes (default: a temp dir, deleted)")
    ap.add_argument("--name", default="diagnose", help="results/<name>.json")
    ap.add_argument("--ref-code", default=None, help="directory holding a reference lensarray package (see above)")
    ap.add_argument("--diagnose-only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from lensarray.cube import open_cube

    if args.diagnose_only:  # the --ref-code subprocess: one diagnose, JSON on the last line
        import json

        dt, _, res, _ = _diagnose(open_cube(args.diagnose_only), args.workers, args.warm_workers)
        print(json.dumps({"diagnose_s": dt, "core_lr_auc": res["core_lr"]["auc"]}))
        return {}

    root = args.root or tempfile.mkdtemp(prefix="lensarray-bench-diag-")
    rows, mem_rows = [], []
    try:
        for n in args.sizes:
            base_n = args.tile_from if 0 < args.tile_from < n else n
            url = os.path.join(root, f"cube{base_n}.zarr")
            if not os.path.exists(url):
                _build(base_n, url, args.workers, quantize=args.quantize)
            raw, diag, peaks, warm, ref, ref_auc = [], [], [], [], [], []
            for _ in range(args.repeats):  # interleaved: load drifts hit both sides alike
                raw.append(_raw_read(url, n, base_n))
                ds = open_cube(url) if base_n == n else _tiled(url, n)
                dt, peak, res, t_warm = _diagnose(ds, args.workers, args.warm_workers)
                diag.append(dt)
                warm.append(t_warm)
                peaks.append(peak)
                if args.ref_code and base_n == n:
                    t_ref, auc_ref = _diagnose_ref(url, args.workers, args.warm_workers, args.ref_code)
                    ref.append(t_ref)
                    ref_auc.append(auc_ref)
            r, d = statistics.median(raw), statistics.median(diag)
            rows.append(
                {
                    "pairs": n,
                    "tiled_from": base_n if base_n != n else None,
                    "raw_read_s": r,
                    "diagnose_s": d,
                    "diagnose_vs_raw_read": r / d,
                    "raw_ms_per_pair": 1e3 * r / n,
                    "diagnose_ms_per_pair": 1e3 * d / n,
                    "diagnose_peak_rss_mib": max(peaks),
                    "raw_s_all": raw,
                    "diagnose_s_all": diag,
                    "worker_import_s_all": warm if args.warm_workers else None,
                    "diagnose_plus_import_vs_raw_read": r / (d + statistics.median(warm))
                    if args.warm_workers
                    else None,
                    "core_lr_auc": res["core_lr"]["auc"],
                    "stages_s": res.get("elapsed_by_stage_s"),
                    "ref_code": args.ref_code if ref else None,
                    "ref_diagnose_s_all": ref or None,
                    "ref_diagnose_vs_raw_read": r / statistics.median(ref) if ref else None,
                    "ref_core_lr_auc": ref_auc[-1] if ref_auc else None,
                }
            )
            print(
                table(
                    rows[-1:],
                    ["pairs", "raw_read_s", "diagnose_s", "diagnose_vs_raw_read", "ref_diagnose_vs_raw_read"],
                ),
                flush=True,
            )
            if args.root is None and base_n == n:
                shutil.rmtree(url, ignore_errors=True)
        if args.memory_base and args.memory_sizes:
            toy = (args.memory_base, args.memory_toy_size) if args.memory_toy_size else None
            base_url = None if toy else os.path.join(root, f"cube{args.memory_base}.zarr")
            if base_url and not os.path.exists(base_url):
                _build(args.memory_base, base_url, args.workers)
            for n in args.memory_sizes:
                dt, peak, mres, _ = _diagnose(_tiled(base_url, n, toy), args.workers)
                mem_rows.append(
                    {
                        "pairs": n,
                        "tiled_from": args.memory_base,
                        "stamp_size": args.memory_toy_size or 64,
                        "source": "toy cube in memory" if toy else "built cube",
                        "diagnose_s": dt,
                        "peak_rss_all_processes_mib": peak,
                        "peak_rss_client_mib": mres["_bench_peaks_mib"]["client"],
                        "peak_rss_largest_child_mib": mres["_bench_peaks_mib"]["largest_child"],
                    }
                )
                print(table(mem_rows[-1:], list(mem_rows[-1])), flush=True)
            if len(mem_rows) > 1:
                mem_rows[-1]["growth_vs_first_mib"] = (
                    mem_rows[-1]["peak_rss_all_processes_mib"] - mem_rows[0]["peak_rss_all_processes_mib"]
                )
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    if rows:
        print(
            table(
                rows,
                [
                    "pairs",
                    "raw_read_s",
                    "diagnose_s",
                    "diagnose_vs_raw_read",
                    "raw_ms_per_pair",
                    "diagnose_ms_per_pair",
                    "diagnose_peak_rss_mib",
                ],
            )
        )
    if mem_rows:
        print(table(mem_rows, list(mem_rows[-1])))
    path = write(args.name, {"workers": args.workers, "rows": rows, "memory": mem_rows})
    print(f"wrote {path}")
    return {"rows": rows, "memory": mem_rows}


if __name__ == "__main__":
    main()
