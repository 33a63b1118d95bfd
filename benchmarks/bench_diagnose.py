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
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import TYPE_CHECKING, cast

sys.path.insert(0, os.path.dirname(__file__))
from lensarray.cluster import client_numpy_env  # noqa: E402

# this process (the client, its LocalCluster's scheduler and the raw read) runs as the
# `lensarray` command's process does, before numpy is imported
client_numpy_env()

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


class _Processes:
    """A scheduler and ``workers`` plain workers (1 thread each), each a ``dask`` CLI subprocess
    of this one, so that each one's memory is its own; ``close`` ends exactly these processes."""

    def __init__(self, workers: int):
        import subprocess

        from lensarray.cluster import WORKER_MALLOC_ENV

        self._dir = tempfile.mkdtemp(prefix="lensarray-bench-sched-")
        sched_file = os.path.join(self._dir, "scheduler.json")
        env = dict(os.environ, **{k: str(v) for k, v in WORKER_MALLOC_ENV.items()})
        dask_cli = [sys.executable, "-m", "dask"]
        self.scheduler = subprocess.Popen(
            [*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0"]
            + ["--scheduler-file", sched_file],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.time() + 120
        while not os.path.exists(sched_file) and time.time() < deadline:
            time.sleep(0.2)
        self.scheduler_file = sched_file
        self.workers = [
            subprocess.Popen(
                [*dask_cli, "worker", "--scheduler-file", sched_file, "--nthreads", "1", "--no-nanny"]
                + ["--memory-limit", "4GiB"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            for _ in range(workers)
        ]

    def close(self) -> None:
        procs = [*self.workers, self.scheduler]
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except Exception:
                p.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


def _cluster(workers: int, scheduler_process: bool = False):
    """A LocalCluster (its scheduler runs in this process) or, with ``scheduler_process``,
    :class:`_Processes` (the scheduler in its own process)."""
    from distributed import Client

    from lensarray.cluster import local_cluster

    if scheduler_process:
        procs = _Processes(workers)
        client = Client(scheduler_file=procs.scheduler_file)
        client.wait_for_workers(workers, timeout=180)
        return procs, client
    lc = local_cluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return lc, Client(lc)


class _PidPeaks:
    """Peak RSS (bytes) of given process ids, sampled every ``interval`` s in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.05):
        import threading

        self.pids, self.interval = pids, interval
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        procs = {k: psutil.Process(p) for k, p in self.pids.items()}
        while not self._stop.is_set():
            for k, proc in procs.items():
                try:
                    self.peak[k] = max(self.peak[k], proc.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(self.interval)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {k: v / 2**20 for k, v in self.peak.items()}


def _build(n: int, url: str, workers: int, quantize: bool = False) -> float:
    from lensarray.pipeline import build

    lc, client = _cluster(workers)
    try:
        t0 = time.perf_counter()
        build(_cfg(n, quantize), url, client=client, progress=False)
        return time.perf_counter() - t0
    finally:
        _close(client, lc)


def _raw_read(url: str, n: int, base_n: int | None = None, *, shard_reader: bool = False) -> float:
    """Seconds to read every stored image array of ``n`` pairs shard by shard; with ``base_n``
    the cube at ``url`` holds ``base_n`` pairs and is read again until ``n`` are read (as the
    tiled cube diagnose reads).

    The raw read of the goal is zarr's own (``array[a:b]``, its default pipeline, which decodes
    a shard's inner chunks on its thread pool). With ``shard_reader`` the same shards are read by
    :func:`lensarray.shard_read.read_pairs` (the pixel pass's reader) on a pool of as many
    threads as cores, for the ratio against the fastest read this package has."""
    from concurrent.futures import ThreadPoolExecutor

    from lensarray.shard_read import read_pairs
    from lensarray.store import open_group

    g = open_group(url, mode="r")
    arrays = [cast("zarr.Array", g[name]) for name in ("host", "invvar", "arc", "maskbits")]
    base_n = base_n or n
    # tile by tile, shard by shard: the tiled cube's chunks
    ranges = [
        (b, min(b + SHARD, base_n, n - s)) for s in range(0, n, base_n) for b in range(0, min(base_n, n - s), SHARD)
    ]
    t0 = time.perf_counter()
    if shard_reader:
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            for _ in pool.map(lambda job: read_pairs(*job), [(arr, a, b) for a, b in ranges for arr in arrays]):
                pass
    else:
        for a, b in ranges:
            for arr in arrays:
                arr[a:b]
    return time.perf_counter() - t0


def _import_pixel_pass() -> None:
    """What a worker imports (and loads from numba's cache) before its first pixel-pass task:
    the pass, its kernels and its reader (zarr's codecs)."""
    import numpy as np
    import zarr.codecs  # noqa: F401  (the reader's: unpickling the task's zarr array imports it)

    from lensarray.diagnostics import features
    from lensarray.diagnostics.audit import DEFAULT_ABLATION

    # every kernel a diagnose task runs: the table, the visibility proxy and the centre mask
    ablation = tuple(sorted((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in DEFAULT_ABLATION.items()))
    kw = dict(core_radius=5.0, snr_band=0, ref_band=0, pixel_scale=0.262, box=4, side=8, ablation=ablation)
    if "edge_side" in {f.name for f in dataclasses.fields(features.MeasureSpec)}:  # not in --ref-code before it
        kw["edge_side"] = 8
    spec = features.MeasureSpec(**kw)
    z = np.zeros((1, 1, 32, 32), np.float32)
    features._measure_block(
        z,
        z,
        z + 1,
        np.zeros((1, 32, 32), np.int32),
        np.ones(1),
        np.ones((1, 1)),
        np.array([[0, 1, 1]], np.int64),
        spec=spec,
        names=(*features._INPUTS, "pair_flags"),
        stored=(),
    )


def _diagnose(
    ds, workers: int, warm: bool = False, scheduler_process: bool = False
) -> tuple[float, float, dict, float]:
    """Seconds of ``diagnose`` on fresh workers, peak RSS (MiB, all processes), the result, and the
    seconds the workers took to import the pixel pass first (``warm``; else 0: inside diagnose).
    With ``scheduler_process`` the scheduler's own peak RSS is in ``res["_bench_peaks_mib"]``."""
    from lensarray.diagnostics import diagnose

    with PeakRSS() as mem:
        lc, client = _cluster(workers, scheduler_process)
        try:
            by_pid = None
            if scheduler_process:
                pids = {"scheduler": int(client.run_on_scheduler(os.getpid))}
                pids.update({f"worker {i}": int(p) for i, p in enumerate(client.run(os.getpid).values())})
                by_pid = _PidPeaks(pids)
            t0 = time.perf_counter()
            if warm:
                client.run(_import_pixel_pass)
            t_warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            res, _ = diagnose(ds, progress=False, n_boot=50)
            dt = time.perf_counter() - t0
            peaks: dict = {} if by_pid is None else by_pid.stop()
        finally:
            _close(client, lc)
    peaks.update(client=mem.peak_self / 2**20, largest_child=mem.peak_child / 2**20)
    res["_bench_peaks_mib"] = peaks
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


def _read_tile_block(src, n_src: int, chunk: int, block_id=None):
    """Block ``block_id`` of a cube tiled along ``pair``: source block ``block_id mod`` the
    source's number of blocks, read from its zarr array ``src`` as the pixel pass reads a
    stored cube's blocks (:func:`lensarray.shard_read.read_pairs`)."""
    from lensarray.shard_read import read_pairs

    per = -(-n_src // chunk)
    a = (block_id[0] % per) * chunk
    return read_pairs(src, a, min(a + chunk, n_src))


def _tiled(url: str, n: int, *, toy: bool = False):
    """A cube of ``n`` pairs tiling the zarr cube at ``url`` along ``pair``, with new pair ids.

    Each variable's chunk is one Blockwise task reading its source block from zarr (the zarr
    array is one graph key, like ``xarray.open_zarr``'s), so the pixel pass fuses every read
    into its task as on a zarr-opened cube; ``xr.concat`` made a concatenate task per variable
    and chunk that nothing fused (20,976 tasks at 200k, held by the scheduler).
    """
    import dask
    import dask.array as da
    import xarray as xr
    import zarr

    from lensarray.cube import open_cube

    base = xr.open_zarr(url, consolidated=False, zarr_format=3) if toy else open_cube(url)
    group = zarr.open_group(url, mode="r")
    n_src = int(base.sizes["pair"])
    per = -(-n_src // SHARD)
    src_chunks = [min(SHARD, n_src - b * SHARD) for b in range(per)]
    out_chunks: list[int] = []
    while sum(out_chunks) < n:
        out_chunks.append(min(src_chunks[len(out_chunks) % per], n - sum(out_chunks)))
    data_vars = {}
    for name, var in base.data_vars.items():
        if var.dims[:1] != ("pair",):
            data_vars[name] = var
            continue
        src = dask.delayed(group[str(name)], pure=True)
        data = da.map_blocks(
            _read_tile_block,
            src,
            n_src,
            SHARD,
            chunks=(tuple(out_chunks), *((int(d),) for d in var.shape[1:])),
            dtype=var.dtype,
            meta=np.empty((0,) * var.ndim, var.dtype),
            name=f"tile-{name}",
        )
        data_vars[name] = (var.dims, data, var.attrs)
    coords = {k: v for k, v in base.coords.items() if "pair" not in v.dims}
    ds = xr.Dataset(data_vars, coords={**coords, "pair": np.arange(n, dtype=np.int64)}, attrs=dict(base.attrs))
    ds.attrs["n_pairs"] = n
    return ds


def _write_toy(path: str, n: int, size: int) -> str:
    """The in-memory toy cube of ``n`` pairs and stamp side ``size`` written to zarr at ``path``."""
    from lensarray.diagnostics import toy_cube

    if not os.path.exists(path):
        toy_cube(n, size=size, seed=0, chunk_pairs=SHARD).to_zarr(path, zarr_format=3, consolidated=False)
    return path


def _graph_facts(ds) -> dict:
    """Tasks (not data) and data keys per chunk of diagnose's pixel pass on ``ds`` (first chunk,
    after dask's optimisation, as the scheduler receives it), and the number of chunks."""
    import dask
    from dask._task_spec import DataNode

    from lensarray.diagnostics.audit import DIAGNOSE_STORED
    from lensarray.diagnostics.features import _blocks, lr_subsample, measure_spec, stored_pair_vars

    n = int(ds.sizes["pair"])
    blocks, chunks, _ = _blocks(
        ds, measure_spec(ds), lr_subsample(n, 20000), None, stored_pair_vars(ds, DIAGNOSE_STORED)
    )
    (opt,) = dask.optimize(blocks[0])
    graph = dict(opt.__dask_graph__())
    tasks = sum(not isinstance(v, DataNode) for v in graph.values())
    return {"chunks": len(chunks), "tasks_per_chunk": tasks, "data_keys_first_chunk": len(graph) - tasks}


def _cumulative_samples(prof: dict) -> dict[str, int]:
    """Samples per function of a ``client.profile()`` tree, each counted once per stack."""
    out: dict[str, int] = {}

    def rec(node: dict, seen: frozenset) -> None:
        d = node.get("description", {})
        name = f"{str(d.get('filename', '?')).split('/')[-1]}:{d.get('name', '?')}"
        if name not in seen:
            out[name] = out.get(name, 0) + int(node.get("count", 0))
            seen = seen | {name}
        for child in node.get("children", {}).values():
            rec(child, seen)

    rec(prof, frozenset())
    return out


def _profile_pixel_pass(url: str, workers: int) -> dict:
    """diagnose's pixel pass over the cube at ``url`` under a task stream and the workers'
    statistical profile (warm workers), then the same chunks in this process (sync scheduler)."""
    import collections

    import dask
    from distributed import get_task_stream

    from lensarray.config import RunConfig
    from lensarray.cube import open_cube
    from lensarray.diagnostics import features
    from lensarray.diagnostics.audit import DEFAULT_ABLATION, DIAGNOSE_STORED, MAX_VISIBILITY_PAIRS

    ds = open_cube(url)
    n = int(ds.sizes["pair"])
    cfg = features.cube_config(ds)
    spec = features.measure_spec(
        ds, cfg, ablation=DEFAULT_ABLATION, edge_radius=max(cfg.core_mask.radius, RunConfig().diagnostics.core_radius)
    )
    lr, vis = features.lr_subsample(n, 20000, 0), features.lr_subsample(n, MAX_VISIBILITY_PAIRS, 1)
    # as pair_table: the stored variables that are plain store reads are read whole in the client
    in_tasks, whole = features.split_stored(ds, features.stored_pair_vars(ds, DIAGNOSE_STORED))
    blocks, chunks, _ = features._blocks(ds, spec, lr, vis, in_tasks)
    out: dict = {"pairs": n, "graph": _graph_facts(ds), "load_average_start": os.getloadavg()}
    lc, client = _cluster(workers)
    try:
        client.run(_import_pixel_pass)
        nbytes: list[int] = []
        with get_task_stream(client) as ts:
            t0 = time.perf_counter()
            features.compute_tasks(
                blocks, desc="", sink=lambda i, r: nbytes.append(sum(np.asarray(v).nbytes for v in r.values()))
            )
            out["distributed_s"] = time.perf_counter() - t0
        by_action: collections.Counter = collections.Counter()
        for t in ts.data:
            for ss in t["startstops"]:
                by_action[ss["action"]] += ss["stop"] - ss["start"]
        out["task_stream"] = {"tasks": len(ts.data), "seconds_by_action": dict(by_action)}
        out["result_mib_to_client"] = sum(nbytes) / 2**20
        prof = client.profile()
        total = max(int(prof.get("count", 0)), 1)
        top = sorted(_cumulative_samples(prof).items(), key=lambda kv: -kv[1])[:25]
        out["worker_profile"] = {"samples": total, "share_by_function": {k: round(v / total, 3) for k, v in top}}
    finally:
        _close(client, lc)
    # the same chunks in this process, interleaved with the tasks that also read the stored
    # variables (before pair_table read them whole) and with the whole read itself
    every = features._blocks(ds, spec, lr, vis, in_tasks + tuple(whole))[0]
    one: dict[str, list[float]] = {"tasks_s": [], "tasks_reading_all_stored_s": [], "stored_whole_s": []}
    for _ in range(2):
        for key, work in (
            ("tasks_s", lambda: [dask.compute(b, scheduler="sync") for b in blocks]),
            ("tasks_reading_all_stored_s", lambda: [dask.compute(b, scheduler="sync") for b in every]),
            ("stored_whole_s", lambda: [np.asarray(src) for src in whole.values()]),
        ):
            t0 = time.perf_counter()
            work()
            one[key].append(time.perf_counter() - t0)
    out["one_process_s"] = min(one["tasks_s"])
    out["one_process"] = {"stored_read_whole": list(whole), "stored_in_tasks": list(in_tasks), **one}
    out["parts_cpu_ms_per_pair"] = _kernel_parts(ds, url, spec)
    out["raw_read_s"] = _raw_read(url, n)
    out["load_average_end"] = os.getloadavg()
    return out


def _kernel_parts(ds, url: str, spec, chunks: int = 8, repeats: int = 3) -> dict:
    """Process CPU ms per pair of each part of a pixel-pass task, one thread, on the first ``chunks``
    shards (best of ``repeats``): the image arrays read straight from zarr (the raw read's path),
    the table kernel alone, the central squares with the centre mask for every pair (as every pair
    of a cube up to 20,000 pairs is in the core-LR subsample), the visibility proxy per measured pair."""
    from lensarray.diagnostics import features
    from lensarray.store import open_group

    g = open_group(url, mode="r")
    names = ("host", "arc", "invvar", "maskbits")
    shards = [(a, min(a + SHARD, int(ds.sizes["pair"]))) for a in range(0, chunks * SHARD, SHARD)]
    shards = [(a, b) for a, b in shards if a < b]
    n = sum(b - a for a, b in shards)
    data = [{v: np.asarray(g[v][a:b]) for v in names} for a, b in shards]
    te = [np.asarray(ds["theta_e"].values[a:b]) for a, b in shards]
    pf = [np.asarray(ds["psf_fwhm"].values[a:b]) for a, b in shards]

    def tables(vis: bool) -> None:
        for d, t, f in zip(data, te, pf, strict=True):
            for i in range(0, len(t), features.SUB_BATCH):
                s = slice(i, i + features.SUB_BATCH)
                flags = np.full(len(t[s]), vis)
                features._table_batch(
                    d["host"][s], d["arc"][s], d["invvar"][s], d["maskbits"][s], t[s], f[s], flags, spec
                )

    def central() -> None:
        for (a, _), d, f in zip(shards, data, pf, strict=True):
            for i in range(0, len(f), features.SUB_BATCH):
                s = slice(i, i + features.SUB_BATCH)
                features._central_batch(d["host"][s], d["arc"][s], f[s], np.arange(a + i, a + i + len(f[s])), spec)

    parts = {
        "read": lambda: [g[v][a:b] for a, b in shards for v in names],
        "table": lambda: tables(False),
        "table_and_visibility": lambda: tables(True),
        "central_and_centre_mask": central,
    }
    best = dict.fromkeys(parts, float("inf"))
    for k in parts:
        parts[k]()  # numba caches, first-touch
    for _ in range(repeats):
        for k, work in parts.items():
            c0 = time.process_time()
            work()
            best[k] = min(best[k], time.process_time() - c0)
    out = {k: round(1e3 * v / n, 4) for k, v in best.items()}
    out["visibility_per_measured_pair"] = round(out.pop("table_and_visibility") - out["table"], 4)
    out["pairs_timed"] = n
    return out


_MEM_COLS = [
    "pairs",
    "diagnose_s",
    "peak_rss_all_processes_mib",
    "peak_rss_client_mib",
    "peak_rss_scheduler_mib",
    "peak_rss_largest_child_mib",
]


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
        "--scheduler-process",
        action="store_true",
        help="memory runs: the scheduler and plain workers as dask CLI subprocesses, so the scheduler's "
        "peak RSS is measured apart from the client's",
    )
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
    ap.add_argument(
        "--profile",
        default=None,
        metavar="URL",
        help="profile diagnose's pixel pass over the built cube at URL (task stream, worker profile, the "
        "same chunks in this process, a raw read) into results/<name>.json, and stop",
    )
    ap.add_argument("--diagnose-only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from lensarray.cube import open_cube

    if args.diagnose_only:  # the --ref-code subprocess: one diagnose, JSON on the last line
        import json

        dt, _, res, _ = _diagnose(open_cube(args.diagnose_only), args.workers, args.warm_workers)
        print(json.dumps({"diagnose_s": dt, "core_lr_auc": res["core_lr"]["auc"]}))
        return {}

    if args.profile:
        prof = _profile_pixel_pass(args.profile, args.workers)
        print(f"wrote {write(args.name, {'workers': args.workers, 'profile': prof})}")
        return prof

    root = args.root or tempfile.mkdtemp(prefix="lensarray-bench-diag-")
    rows, mem_rows = [], []
    try:
        for n in args.sizes:
            base_n = args.tile_from if 0 < args.tile_from < n else n
            url = os.path.join(root, f"cube{base_n}.zarr")
            if not os.path.exists(url):
                _build(base_n, url, args.workers, quantize=args.quantize)
            raw, raw_sr, diag, peaks, warm, ref, ref_auc = [], [], [], [], [], [], []
            for _ in range(args.repeats):  # interleaved: load drifts hit both sides alike
                raw.append(_raw_read(url, n, base_n))
                raw_sr.append(_raw_read(url, n, base_n, shard_reader=True))
                ds = open_cube(url) if base_n == n else _tiled(url, n)
                graph = _graph_facts(ds)
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
                    "pixel_pass_graph": graph,
                    "load_average": os.getloadavg(),
                    "raw_read_s": r,
                    "diagnose_s": d,
                    "diagnose_vs_raw_read": r / d,
                    "raw_ms_per_pair": 1e3 * r / n,
                    "diagnose_ms_per_pair": 1e3 * d / n,
                    "diagnose_peak_rss_mib": max(peaks),
                    "raw_s_all": raw,
                    "raw_shard_reader_s_all": raw_sr,
                    "diagnose_vs_raw_read_shard_reader": statistics.median(raw_sr) / d,
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
            toy = bool(args.memory_toy_size)
            if toy:
                base_url = os.path.join(root, f"toy{args.memory_base}_{args.memory_toy_size}.zarr")
                _write_toy(base_url, args.memory_base, args.memory_toy_size)
            else:
                base_url = os.path.join(root, f"cube{args.memory_base}.zarr")
                if not os.path.exists(base_url):
                    _build(args.memory_base, base_url, args.workers)
            for n in args.memory_sizes:
                ds = _tiled(base_url, n, toy=toy)
                graph = _graph_facts(ds)
                dt, peak, mres, _ = _diagnose(ds, args.workers, scheduler_process=args.scheduler_process)
                bp = mres["_bench_peaks_mib"]
                mem_rows.append(
                    {
                        "pairs": n,
                        "tiled_from": args.memory_base,
                        "stamp_size": args.memory_toy_size or 64,
                        "source": "toy cube written to zarr" if toy else "built cube",
                        "pixel_pass_graph": graph,
                        "load_average": os.getloadavg(),
                        "diagnose_s": dt,
                        "peak_rss_all_processes_mib": peak,
                        "peak_rss_client_mib": bp["client"],
                        "peak_rss_scheduler_mib": bp.get("scheduler"),
                        "peak_rss_workers_mib": [v for k, v in bp.items() if k.startswith("worker ")] or None,
                        "peak_rss_largest_child_mib": bp["largest_child"],
                    }
                )
                print(table(mem_rows[-1:], _MEM_COLS), flush=True)
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
        print(table(mem_rows, _MEM_COLS))
    path = write(args.name, {"workers": args.workers, "rows": rows, "memory": mem_rows})
    print(f"wrote {path}")
    return {"rows": rows, "memory": mem_rows}


if __name__ == "__main__":
    main()
