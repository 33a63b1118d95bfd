"""Verify a cube end to end: schema, completeness, checksums, finite values, re-rendering.

Every shard is read (zarr checks each chunk's crc32c on read, so corrupted or truncated bytes
raise), checked for a done marker, against the digest its writer recorded (bound to the shard's
index and the cube: a deleted chunk, a shard copied over another or from another cube is caught)
and for NaN/inf in the images, and a sample of pairs is re-rendered from the stored
configuration and compared bit for bit with what is stored. `lensarray build --resume --repair`
rewrites exactly the shards reported bad. Exit status 1 names every bad
shard or pair; 0 means the cube is whole.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from ._common import (
    BadInputError,
    add_cluster_arguments,
    open_cube_from_args,
    progress_enabled,
    storage_options_from_args,
)

NAME = "verify"
HELP = "check checksums, completeness, NaN/inf and re-render a sample of pairs"


def add_arguments(p) -> None:
    p.add_argument("store", help="cube location (local path or s3://...)")
    p.add_argument("--sample", type=int, default=8, help="pairs to re-render and compare (default 8; 0 = none)")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.add_argument(
        "--hosts",
        metavar="HOSTCUBE",
        help="host cube the cube was built from, to re-render real-host pairs (verify never opens a "
        "URL named inside the cube it checks; without it those pairs are not re-rendered)",
    )
    add_cluster_arguments(p)


IMAGE_CHECKS = ("host", "invvar", "arc")


def verify_store(
    url: str,
    storage_options: dict | None = None,
    *,
    sample: int = 8,
    progress: bool = False,
    hosts_url: str | None = None,
    notes: list[str] | None = None,
) -> list[str]:
    """Every problem found in the cube at ``url`` (an empty list means it is whole).

    ``hosts_url`` is the host cube to re-render real-host pairs from, given by the caller: the
    ``hosts.source`` recorded in the cube is never opened (a crafted cube could name any URL).
    Without it such a cube's re-render check is skipped and a line is appended to ``notes``.
    """
    from tqdm.auto import tqdm

    from ..config import config_from_dict
    from ..cube import VARIABLES, CubeSchemaError, open_cube
    from ..pipeline import render_pairs, stored_plan
    from ..storage import int_attr, str_attr, zarr_array
    from ..store import check_shards, completed_shards, open_group, shard_bounds

    problems: list[str] = []
    try:
        open_cube(url, storage_options=storage_options, allow_incomplete=True)  # schema check
    except CubeSchemaError as exc:
        return [str(exc)]
    group = open_group(url, storage_options, mode="r")
    attrs = dict(group.attrs)
    n = int(zarr_array(group, "pair").shape[0])
    host = zarr_array(group, "host")
    shard_pairs = int_attr(group, "shard_pairs", (host.shards or host.chunks)[0])
    bounds = shard_bounds(n, shard_pairs)
    done = completed_shards(group)
    for i in np.flatnonzero(~done):
        a, b = bounds[i]
        problems.append(f"shard {i} (pairs {a}-{b - 1}): not complete (no done marker)")

    def non_finite(name: str, data: np.ndarray) -> str | None:
        if name not in IMAGE_CHECKS:
            return None
        bad = ~np.isfinite(data)
        if not bad.any():
            return None
        pairs = np.unique(np.nonzero(bad)[0])
        return (
            f"{name} has {int(bad.sum())} NaN/inf pixels in {pairs.size} pair(s) (first offsets {pairs[:10].tolist()})"
        )

    # every finished shard is read once: checksums on read, digest of content bound to the
    # shard's index and the cube, finite pixels
    with tqdm(total=int(done.sum()), disable=not progress, desc="verify", unit="shard") as bar:
        bad = check_shards(group, on_shard=lambda i: bar.update(1), inspect=non_finite)
    for shard in sorted(bad):
        problems += bad[shard]
    if sample > 0 and not problems:
        cfg = config_from_dict(json.loads(str_attr(group, "config", "{}")))
        hosts = "" if cfg.hosts.source == "synthetic" else (hosts_url or "")
        plan = stored_plan(cfg, attrs, storage_options=storage_options, hosts_url=hosts)
        ids = np.unique(np.linspace(0, n - 1, min(sample, n)).astype(np.int64))
        from ..quantize import apply_quantization

        fresh = render_pairs(ids, cfg, plan) if cfg.hosts.source == "synthetic" or plan.hosts_url else None
        if fresh is None and notes is not None:
            notes.append(f"re-render skipped: built from host cube {cfg.hosts.source!r}; pass --hosts to check it")
        if fresh is None:
            return problems
        fresh = apply_quantization(fresh, str_attr(group, "quantization", ""))  # as stored
        for name in VARIABLES:
            stored = np.stack([np.asarray(zarr_array(group, name)[int(i)]) for i in ids])
            same = np.array_equal(stored, fresh[name], equal_nan=stored.dtype.kind == "f")
            if not same:
                diff = [
                    int(i)
                    for k, i in enumerate(ids)
                    if not np.array_equal(stored[k], fresh[name][k], equal_nan=stored.dtype.kind == "f")
                ]
                problems.append(f"{name}: stored values differ from a re-render for pairs {diff}")
    return problems


def run(args) -> int:
    from ..cluster import cluster_section

    if args.sample < 0:
        raise BadInputError(f"--sample = {args.sample}: allowed >= 0")
    cluster_section(args)
    # a foreign or newer store is bad input (exit 2), not a damaged cube (exit 1)
    open_cube_from_args(args.store, args, allow_incomplete=True)
    if args.hosts:
        from ..hosts.cutouts import HostCube

        HostCube(args.hosts, storage_options_from_args(args), field="--hosts")
    notes: list[str] = []
    problems = verify_store(
        args.store,
        storage_options_from_args(args),
        sample=args.sample,
        progress=progress_enabled(args),
        hosts_url=args.hosts,
        notes=notes,
    )
    for note in notes:
        print(f"lensarray verify: {note}", file=sys.stderr)
    if problems:
        for p in problems:
            print(f"lensarray verify: {p}", file=sys.stderr)
        print(f"{args.store}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    rerendered = 0 if notes else args.sample
    print(f"{args.store}: OK (checksums, completeness, finite values, re-render of {rerendered} pairs)")
    return 0
