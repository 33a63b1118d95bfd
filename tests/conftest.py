"""Shared fixtures: a small validated run configuration and a small built cube."""

from __future__ import annotations

import pytest

from lensarray.config import RunConfig


def small_config(
    n: int = 48, *, shard: int = 16, chunk: int = 8, size: int | None = 48, seed: int | None = 7, **over
) -> RunConfig:
    """A validated configuration for fast synchronous builds.

    ``size`` / ``seed`` ``None`` keep the embedded default (what ``lensarray build`` uses without
    ``--size`` / ``--seed``: for cubes compared with CLI builds). Dotted overrides
    (``{"core_mask.policy": "hard"}``) are applied last; ``cluster.kind`` is ``"none"``
    (in-process) unless overridden.
    """
    base: dict = {"run.n_pairs": n, "run.shard_pairs": shard, "run.chunk_pairs": chunk, "cluster.kind": "none"}
    if size is not None:
        base["run.size"] = size
    if seed is not None:
        base["run.seed"] = seed
    base.update(over)
    return RunConfig().replace(**base).validate()


@pytest.fixture(scope="session")
def make_cfg():
    """:func:`small_config`, as a fixture (usable from module-scoped fixtures)."""
    return small_config


@pytest.fixture(scope="session")
def small_cube(tmp_path_factory) -> str:
    """URL of a 32-pair cube (4 shards of 8, 32x32 stamps), built once per session; read only."""
    from lensarray import pipeline

    url = str(tmp_path_factory.mktemp("small_cube") / "small.zarr")
    pipeline.build(small_config(32, shard=8, chunk=4, size=32), url, progress=False)
    return url


def damaged_copy(cube: str, dest, variable: str, *, shard: int = 1, offset: int = 20):
    """A copy of the cube at ``cube`` made at ``dest`` with one byte flipped ``offset`` bytes into
    shard ``shard`` of ``variable`` (the first inner chunk's compressed bytes, so its crc32c no
    longer matches); returns ``dest``."""
    import json
    import shutil
    from pathlib import Path

    dest = Path(dest)
    shutil.copytree(cube, dest)
    ndim = len(json.loads((dest / variable / "zarr.json").read_text())["shape"])
    path = dest / variable / "c" / str(shard)
    for _ in range(ndim - 1):
        path = path / "0"
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x5A
    path.write_bytes(bytes(raw))
    return dest
