"""Sanity caps on what a store's own metadata may make lensarray read or allocate.

A crafted cube can declare any shape, chunking or attribute. Before anything is read by size,
:func:`check_declared_sizes` checks that the declared sizes are within the ranges a build can
produce and consistent with each other (the recorded configuration, the image arrays, the
shard layout, the done markers), so no read is driven by an attribute beyond the cube's
declared, capped size. Every refusal is a one-line :class:`~lensarray.cube.CubeSchemaError`.
"""

from __future__ import annotations

import json
import math

__all__ = ["check_declared_sizes", "MAX_PAIRS", "MAX_SIZE", "MAX_BANDS", "MAX_SHARD_PAIRS", "MAX_CONFIG_CHARS"]

#: The ranges of the ``[run]`` configuration a build accepts.
MAX_PAIRS = 100_000_000
MAX_SIZE = 512
MAX_BANDS = 4
MAX_SHARD_PAIRS = 65536
#: A recorded configuration is ~2 KB of JSON.
MAX_CONFIG_CHARS = 1 << 20


def _shape(group, name):
    try:
        return tuple(int(v) for v in group[name].shape)
    except KeyError:
        return None


def check_declared_sizes(group, attrs: dict, where: str) -> None:
    """Refuse a store whose declared sizes are out of range or inconsistent (see module doc)."""
    from .cube import CubeSchemaError
    from .store import DIGEST_VAR, DONE_VAR  # the per-shard arrays (one row per shard, not per pair)

    def bad(msg: str) -> CubeSchemaError:
        return CubeSchemaError(f"{where}: {msg}")

    raw = attrs.get("config", "")
    if not isinstance(raw, str) or len(raw) > MAX_CONFIG_CHARS:
        raise bad(f"the 'config' attribute is not a JSON string of <= {MAX_CONFIG_CHARS} characters")
    try:
        recorded = json.loads(raw) if raw else {}
    except ValueError:
        raise bad("the 'config' attribute is not valid JSON") from None
    host = _shape(group, "host")
    if host is None or len(host) != 4:
        raise bad("no 4-d 'host' array (pair, band, y, x)")
    n, nb, sy, sx = host
    if not (1 <= n <= MAX_PAIRS and 1 <= nb <= MAX_BANDS and 16 <= sy <= MAX_SIZE and sy == sx):
        raise bad(
            f"declared host shape {host}: allowed (1..{MAX_PAIRS}, 1..{MAX_BANDS}, S, S) with S in [16, {MAX_SIZE}]"
        )
    run = recorded.get("run", {}) if isinstance(recorded, dict) else {}
    if run and run.get("n_pairs") not in (None, n):
        raise bad(f"declares {n} pairs but its configuration records run.n_pairs = {run.get('n_pairs')!r}")
    for name in ("invvar", "arc"):
        if _shape(group, name) not in (None, host):
            raise bad(f"{name} shape {_shape(group, name)} differs from host {host}")
    if _shape(group, "maskbits") not in (None, (n, sy, sx)):
        raise bad(f"maskbits shape {_shape(group, 'maskbits')}: expected {(n, sy, sx)}")
    for name in group.array_keys():
        shape = _shape(group, name)
        if shape and len(shape) >= 1 and shape[0] not in (n, nb, sy) and name not in (DONE_VAR, DIGEST_VAR):
            raise bad(f"array {name!r} has {shape[0]} rows: allowed one per pair ({n})")
    arr = group["host"]
    shard = int(arr.shards[0]) if getattr(arr, "shards", None) else int(arr.chunks[0])
    declared = attrs.get("shard_pairs", shard)
    if not isinstance(declared, int) or declared != shard or not 1 <= shard <= MAX_SHARD_PAIRS:
        raise bad(
            f"shard_pairs attribute {declared!r} vs stored shards of {shard} pairs: allowed equal, "
            f"in [1, {MAX_SHARD_PAIRS}]"
        )
    done = _shape(group, DONE_VAR)
    if done is not None and done != (math.ceil(n / shard),):
        raise bad(f"shard_done has shape {done}: expected ({math.ceil(n / shard)},) for {n} pairs in shards of {shard}")
