"""Verify a cube end to end: schema, completeness, checksums, finite values, re-rendering.

Every shard is read (zarr checks each chunk's crc32c on read, so corrupted bytes raise), checked
for a done marker and for NaN/inf in the images, and a sample of pairs is re-rendered from the
stored configuration and compared bit for bit with what is stored. Exit status 1 names every bad
shard or pair; 0 means the cube is whole.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from ..storage import add_storage_arguments
from ._common import fail, storage_options_from_args

NAME = "verify"
HELP = "check checksums, completeness, NaN/inf and re-render a sample of pairs"


def add_arguments(p) -> None:
    p.add_argument("store", help="cube location (local path or s3://...)")
    p.add_argument("--sample", type=int, default=8, help="pairs to re-render and compare (default 8; 0 = none)")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    add_storage_arguments(p)


IMAGE_CHECKS = ("host", "invvar", "arc")


def verify_store(url: str, storage_options: dict | None = None, *, sample: int = 8,
                 progress: bool = False) -> list[str]:
    """Every problem found in the cube at ``url`` (an empty list means it is whole)."""
    from tqdm.auto import tqdm

    from ..config import config_from_dict
    from ..cube import VARIABLES, CubeSchemaError, open_cube
    from ..pipeline import BuildPlan, render_pairs
    from ..store import completed_shards, open_group, shard_bounds

    problems: list[str] = []
    try:
        ds = open_cube(url, storage_options=storage_options)
    except CubeSchemaError as exc:
        return [str(exc)]
    group = open_group(url, storage_options, mode="r")
    attrs = dict(group.attrs)
    n = int(ds.sizes["pair"])
    shard_pairs = int(attrs.get("shard_pairs", group["host"].shards[0]))
    bounds = shard_bounds(n, shard_pairs)
    done = completed_shards(group)
    for i, (a, b) in enumerate(tqdm(bounds, disable=not progress, desc="verify", unit="shard")):
        if not done[i]:
            problems.append(f"shard {i} (pairs {a}-{b - 1}): not complete (no done marker)")
            continue
        for name in VARIABLES:
            try:
                data = group[name][a:b]
            except Exception as exc:  # checksum mismatch / undecodable chunk
                problems.append(f"shard {i} (pairs {a}-{b - 1}): {name} unreadable: {type(exc).__name__}: {exc}")
                continue
            if name in IMAGE_CHECKS:
                bad = ~np.isfinite(data)
                if bad.any():
                    pairs = np.unique(np.nonzero(bad)[0]) + a
                    problems.append(f"shard {i}: {name} has {int(bad.sum())} NaN/inf pixels in pairs {pairs[:10].tolist()}")
    if sample > 0 and not problems:
        cfg = config_from_dict(json.loads(attrs["config"]))
        hosts = cfg.hosts.source
        plan = BuildPlan(config_json=cfg.to_json(), split_plan_json=attrs.get("split_plan", ""),
                         hosts_url="" if hosts == "synthetic" else hosts, host_permutation_seed=cfg.run.seed)
        if plan.hosts_url:
            from ..hosts.cutouts import HostCube

            plan.n_hosts = int(HostCube(plan.hosts_url).n_hosts)
        ids = np.unique(np.linspace(0, n - 1, min(sample, n)).astype(np.int64))
        from ..quantize import apply_quantization

        fresh = apply_quantization(render_pairs(ids, cfg, plan), attrs.get("quantization", ""))  # as stored
        for name in VARIABLES:
            stored = np.stack([np.asarray(group[name][int(i)]) for i in ids])
            same = np.array_equal(stored, fresh[name], equal_nan=stored.dtype.kind == "f")
            if not same:
                diff = [int(i) for k, i in enumerate(ids)
                        if not np.array_equal(stored[k], fresh[name][k], equal_nan=stored.dtype.kind == "f")]
                problems.append(f"{name}: stored values differ from a re-render for pairs {diff}")
    return problems


def run(args) -> int:
    if args.sample < 0:
        return fail(f"--sample = {args.sample}: allowed >= 0")
    from ..cube import CubeSchemaError, open_cube

    try:  # a foreign or newer store is bad input (exit 2), not a damaged cube (exit 1)
        open_cube(args.store, storage_options=storage_options_from_args(args))
    except CubeSchemaError as exc:
        return fail(str(exc))
    problems = verify_store(args.store, storage_options_from_args(args), sample=args.sample,
                            progress=not args.no_progress)
    if problems:
        for p in problems:
            print(f"lensarray verify: {p}", file=sys.stderr)
        print(f"{args.store}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.store}: OK (checksums, completeness, finite values, re-render of {args.sample} pairs)")
    return 0
