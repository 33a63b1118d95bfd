"""Show what a build would make and cost, before any pixel of it is made.

Plans the build exactly as `lensarray build` does (the same region-disjoint split plan), then
renders a small calibration sample of pairs in this process to measure the per-pair cost and the
compressed bytes per pair with the store's own codecs. Prints shards, pairs and regions per split,
the expected time on the configured workers and the expected bytes on disk. Nothing is written
outside a temporary directory.

The time is this machine's measured cost per pair times the pairs, divided by the worker
threads; another machine, or one busy with other work, differs (the calibration is printed so
it can be rescaled).

examples:
  lensarray plan run.toml
  lensarray plan --pairs 200000 --workers 8 --json
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any

import numpy as np

from ._common import BadInputError, add_storage_arguments, storage_options_from_args

NAME = "plan"
HELP = "shards, pairs per split and region, expected time and bytes of a build, before building"

__all__ = ["plan_summary"]


def add_arguments(p) -> None:
    p.add_argument("config", nargs="?", help="TOML run configuration (default: the embedded default)")
    p.add_argument("--pairs", type=int, help="number of pairs (run.n_pairs)")
    p.add_argument("--shard-pairs", type=int, help="pairs per Zarr shard (run.shard_pairs)")
    p.add_argument("--chunk-pairs", type=int, help="pairs per inner Zarr chunk (run.chunk_pairs)")
    p.add_argument("--workers", type=int, help="workers the build will run on (cluster.workers)")
    p.add_argument(
        "--calibrate",
        type=int,
        default=32,
        metavar="N",
        help="pairs rendered to measure the cost per pair and bytes per pair (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON document instead of text")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    add_storage_arguments(p)  # a host cube on S3; plan starts no cluster (--workers only scales the estimate)


def _sample_ids(n_pairs: int, k: int) -> np.ndarray:
    # spread over the whole range: pairs of every part of the plan, in id order
    return np.unique(np.linspace(0, n_pairs - 1, min(k, n_pairs)).round().astype(np.int64))


def _encoded_bytes(cfg, arrays: dict[str, np.ndarray], n: int) -> int:
    """Bytes on disk of ``n`` rendered pairs written as one shard with the store's codecs."""
    import fsspec

    from ..store import create_store, cube_attrs, open_group, write_shard

    chunk = min(cfg.run.chunk_pairs, n)
    with tempfile.TemporaryDirectory(prefix="lensarray-plan-") as tmp:
        url = f"{tmp}/calibration.zarr"
        create_store(
            url,
            n_pairs=n,
            bands=list(cfg.run.bands),
            size=cfg.run.size,
            chunk_pairs=chunk,
            shard_pairs=n,
            attrs=cube_attrs(cfg),
        )
        write_shard(open_group(url), 0, 0, n, arrays)
        return int(fsspec.filesystem("file").du(url))


def plan_summary(cfg, *, calibrate: int = 32, progress=None, storage_options: dict | None = None) -> dict[str, Any]:
    """Everything a build of ``cfg`` will make, and its expected cost.

    Parameters
    ----------
    cfg
        A validated :class:`lensarray.config.RunConfig`.
    calibrate
        Pairs rendered (in this process) to measure seconds and bytes per pair; a multiple of
        ``run.chunk_pairs`` is used.
    progress
        Callable ``progress(step: str)`` told when each stage starts (the CLI shows a bar).

    Returns
    -------
    dict
        ``pairs``, ``shards``, ``shard_pairs``, ``chunk_pairs``, ``splits`` (per split: ``pairs``
        and ``regions``), ``regions``, ``seconds_per_pair`` (one thread, after compilation),
        ``first_call_seconds`` (numba compilation and caches), ``planning_seconds``,
        ``expected_seconds`` (on ``cluster.workers x threads_per_worker``), ``bytes_per_pair``
        (compressed, on disk), ``expected_bytes``, ``uncompressed_bytes``.
    """
    from ..cube import SPLIT_NAMES
    from ..pipeline import plan_build, render_pairs
    from ..splits import SplitPlan
    from ..store import shard_bounds

    step = progress or (lambda _name: None)
    r = cfg.run
    step("split planning")
    t0 = time.perf_counter()
    hosts_url = "" if cfg.hosts.source == "synthetic" else cfg.hosts.source
    plan = plan_build(cfg, hosts_url=hosts_url, storage_options=storage_options)
    planning = time.perf_counter() - t0

    splits: dict[str, dict[str, int]] = {}
    n_regions = None
    if plan.split_plan_json:
        sp = SplitPlan.from_json(plan.split_plan_json)
        codes = np.fromiter(sp.region_split.values(), dtype=np.int64, count=len(sp.region_split))
        n_regions = int(codes.size)
        for s, name in enumerate(SPLIT_NAMES):
            # achieved = pairs in the split / all pairs, from the planner's own counts
            frac = sp.achieved[s] if s < len(sp.achieved) else 0.0
            splits[name] = {"pairs": int(round(frac * r.n_pairs)), "regions": int((codes == s).sum())}

    step("compilation")
    t0 = time.perf_counter()
    render_pairs(np.array([0], dtype=np.int64), cfg, plan)
    first_call = time.perf_counter() - t0
    step("calibration render")
    k = max(r.chunk_pairs, -(-max(calibrate, 1) // r.chunk_pairs) * r.chunk_pairs)
    ids = _sample_ids(r.n_pairs, k)
    if ids.size < k:  # a cube smaller than the sample: render its pairs again to fill the shard
        ids = np.resize(ids, k)
    t0 = time.perf_counter()
    arrays = render_pairs(ids, cfg, plan)
    per_pair = (time.perf_counter() - t0) / ids.size
    step("calibration write")
    on_disk = _encoded_bytes(cfg, arrays, ids.size) / ids.size
    raw = sum(np.asarray(a).nbytes for a in arrays.values()) / ids.size

    workers = 1 if cfg.cluster.kind == "none" else cfg.cluster.workers * cfg.cluster.threads_per_worker
    n_shards = len(shard_bounds(r.n_pairs, r.shard_pairs))
    return {
        "pairs": r.n_pairs,
        "shards": n_shards,
        "shard_pairs": r.shard_pairs,
        "chunk_pairs": r.chunk_pairs,
        "bands": list(r.bands),
        "size": r.size,
        "regions": n_regions,
        "splits": splits,
        "calibration_pairs": int(ids.size),
        "planning_seconds": planning,
        "first_call_seconds": first_call,
        "seconds_per_pair": per_pair,
        "workers": workers,
        "expected_seconds": per_pair * r.n_pairs / workers + planning,
        "bytes_per_pair": on_disk,
        "expected_bytes": int(on_disk * r.n_pairs),
        "uncompressed_bytes": int(raw * r.n_pairs),
    }


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return ""


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _text(out: dict) -> str:
    lines = [
        f"pairs        {out['pairs']:,} in {out['shards']:,} shards of {out['shard_pairs']} "
        f"(inner chunks of {out['chunk_pairs']}); bands {' '.join(out['bands'])}, {out['size']}x{out['size']} px"
    ]
    if out["splits"]:
        lines.append(f"regions      {out['regions']:,}")
        for name, s in out["splits"].items():
            lines.append(f"  {name:<10} {s['pairs']:>10,} pairs in {s['regions']:,} regions")
    lines += [
        f"time         {_duration(out['expected_seconds'])} on {out['workers']} worker thread(s) "
        f"({out['seconds_per_pair'] * 1e3:.2f} ms/pair measured on {out['calibration_pairs']} pairs here; "
        f"split planning {_duration(out['planning_seconds'])}; first-call compilation "
        f"{_duration(out['first_call_seconds'])} per worker)",
        f"disk         {_size(out['expected_bytes'])} ({_size(out['bytes_per_pair'])}/pair compressed; "
        f"{_size(out['uncompressed_bytes'])} uncompressed)",
    ]
    return "\n".join(lines)


def run(args) -> int:
    from ..config import load_config

    over = {"run.n_pairs": args.pairs, "run.shard_pairs": args.shard_pairs, "run.chunk_pairs": args.chunk_pairs}
    if args.workers is not None:
        if args.workers < 1:
            raise BadInputError(f"--workers = {args.workers}: allowed >= 1")
        over.update({"cluster.workers": args.workers, "cluster.kind": "local"})
    if args.calibrate < 1:
        raise BadInputError(f"--calibrate = {args.calibrate}: allowed >= 1")
    cfg = load_config(args.config, **over)  # ConfigError: cli.main prints it (exit 2)

    from tqdm.auto import tqdm

    stages = ("split planning", "compilation", "calibration render", "calibration write")
    with tqdm(total=len(stages), desc="plan", unit="step", file=sys.stderr, disable=args.no_progress or None) as bar:

        def step(name: str) -> None:
            if name != stages[0]:
                bar.update(1)
            bar.set_postfix_str(name)

        out = plan_summary(
            cfg, calibrate=args.calibrate, progress=step, storage_options=storage_options_from_args(args, cfg)
        )
        bar.update(bar.total - bar.n)
    print(json.dumps(out, indent=2) if args.json else _text(out))
    return 0
