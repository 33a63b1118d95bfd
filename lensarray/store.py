"""Zarr v3 storage of cubes: template, shard-aligned writes, done markers, opening.

Layout decisions (see DESIGN.md "Known pitfalls"):

- Image variables use the sharding codec: the inner chunk (``run.chunk_pairs`` pairs) is the
  read unit, the shard (``run.shard_pairs`` pairs) is the stored object and the write unit.
  A writer always writes whole shards, so two tasks never touch one object.
- Per-pair variables are chunked per shard (no sharding needed; they are tiny).
- Every chunk carries a crc32c checksum after zstd compression, so corruption raises on read.
- Completion is recorded explicitly in a ``shard_done`` array (one chunk per shard, written
  after the shard's data): zarr does not store chunks equal to the fill value, so "chunk exists"
  cannot mean "done".
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from . import __version__
from .cube import SCHEMA_VERSION, VARIABLES, CubeSchemaError, check_schema_version, template, validate_cube
from .errors import BadInputError

__all__ = [
    "StoreExistsError",
    "DONE_VAR",
    "zarr_store",
    "store_exists",
    "create_store",
    "open_group",
    "write_shard",
    "completed_shards",
    "shard_bounds",
    "open_dataset",
    "remove_store",
]

#: Name of the per-shard completion array (dims: shard); dropped when opening as a cube.
DONE_VAR = "shard_done"


class StoreExistsError(BadInputError, FileExistsError):
    """The destination exists and the caller did not ask to overwrite or resume."""


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def zarr_store(url: str, storage_options: dict | None = None, *, read_only: bool = False):
    """A zarr v3 store for a local path or an fsspec URL (``s3://bucket/key``)."""
    if _is_remote(url):
        from zarr.storage import FsspecStore

        opts = dict(storage_options or {})
        if url.startswith("s3://"):
            opts.setdefault("skip_instance_cache", True)
        return FsspecStore.from_url(url, storage_options=opts, read_only=read_only)
    from zarr.storage import LocalStore

    path = url[len("file://"):] if url.startswith("file://") else url
    return LocalStore(path, read_only=read_only)


def _fs_and_path(url: str, storage_options: dict | None = None):
    import fsspec

    opts = dict(storage_options or {})
    if url.startswith("s3://"):
        opts.setdefault("skip_instance_cache", True)
    fs, path = fsspec.core.url_to_fs(url, **opts)
    return fs, path


def store_exists(url: str, storage_options: dict | None = None) -> bool:
    """True when anything (a cube or not) is already stored at ``url``."""
    fs, path = _fs_and_path(url, storage_options)
    return fs.exists(path) and (not fs.isdir(path) or len(fs.ls(path)) > 0)


def remove_store(url: str, storage_options: dict | None = None) -> None:
    """Delete everything at ``url`` (used only for an explicit ``overwrite``)."""
    fs, path = _fs_and_path(url, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def shard_bounds(n_pairs: int, shard_pairs: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` pair index ranges of every shard (the last may be short)."""
    return [(s, min(s + shard_pairs, n_pairs)) for s in range(0, n_pairs, shard_pairs)]


def _encoding(ds: xr.Dataset, chunk_pairs: int, shard_pairs: int) -> dict:
    compressors = [ZstdCodec(level=3), Crc32cCodec()]
    enc: dict[str, dict] = {}
    for name, var in ds.data_vars.items():
        rest = tuple(var.shape[1:])
        if var.ndim >= 3:
            enc[name] = {"chunks": (chunk_pairs, *rest), "shards": (shard_pairs, *rest),
                         "compressors": compressors}
        else:
            enc[name] = {"chunks": (shard_pairs, *rest), "compressors": compressors}
        if VARIABLES[name].dtype.startswith("<U"):
            enc[name]["compressors"] = compressors
    return enc


def create_store(url: str, *, n_pairs: int, bands: list[str], size: int, chunk_pairs: int,
                 shard_pairs: int, attrs: dict[str, Any], storage_options: dict | None = None,
                 overwrite: bool = False) -> None:
    """Write the template (metadata and coordinates only) and the empty ``shard_done`` array.

    Raises :class:`StoreExistsError` before touching anything when ``url`` is occupied and
    ``overwrite`` is False.
    """
    if store_exists(url, storage_options):
        if not overwrite:
            raise StoreExistsError(f"{url} already exists: pass --overwrite to replace it or --resume to finish it")
        remove_store(url, storage_options)
    ds = template(n_pairs, bands, size, attrs=attrs, chunk_pairs=shard_pairs)
    store = zarr_store(url, storage_options)
    ds.to_zarr(store, compute=False, zarr_format=3, mode="w-", consolidated=False,
               encoding=_encoding(ds, chunk_pairs, shard_pairs))
    n_shards = len(shard_bounds(n_pairs, shard_pairs))
    group = zarr.open_group(store, mode="r+", zarr_format=3)
    group.create_array(DONE_VAR, shape=(n_shards,), chunks=(1,), dtype="int8", fill_value=0,
                       dimension_names=["shard"], compressors=[Crc32cCodec()],
                       attributes={"description": "1 once the shard's data are fully written"})


def open_group(url: str, storage_options: dict | None = None, *, mode: str = "r+") -> zarr.Group:
    """The zarr group of a cube, for shard writes and raw reads."""
    return zarr.open_group(zarr_store(url, storage_options, read_only=(mode == "r")), mode=mode,
                           zarr_format=3)


def write_shard(group: zarr.Group, shard_index: int, start: int, stop: int,
                arrays: dict[str, np.ndarray]) -> None:
    """Write every variable of pairs ``[start, stop)`` (one whole shard), then its done marker.

    The marker is written last, so a shard interrupted half-way is rewritten on resume.
    """
    missing = [k for k in VARIABLES if k not in arrays]
    if missing:
        raise ValueError(f"shard {shard_index}: arrays missing variables {missing}")
    for name in VARIABLES:
        data = np.asarray(arrays[name])
        if data.shape[0] != stop - start:
            raise ValueError(f"shard {shard_index}: {name} has {data.shape[0]} pairs, expected {stop - start}")
        group[name][start:stop] = data.astype(VARIABLES[name].dtype, copy=False)
    group[DONE_VAR][shard_index] = 1


def completed_shards(group: zarr.Group) -> np.ndarray:
    """Boolean array, one entry per shard: True when its done marker is set."""
    return np.asarray(group[DONE_VAR][:]) == 1


def open_dataset(url: str, *, storage_options: dict | None = None, chunks: str | dict | None = "shard",
                 validate: bool = True) -> xr.Dataset:
    """Open a cube lazily (see :func:`lensarray.cube.open_cube`)."""
    try:
        store = zarr_store(url, storage_options, read_only=True)
        group = zarr.open_group(store, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError) as exc:
        raise CubeSchemaError(f"{url} is not a lensarray cube (no Zarr v3 group there: {type(exc).__name__})") from None
    except ValueError as exc:  # LocalStore on a missing path
        raise CubeSchemaError(f"{url} is not a lensarray cube ({exc})") from None
    attrs = dict(group.attrs)
    check_schema_version(attrs, where=url)
    if chunks == "shard":
        chunks = {"pair": int(attrs.get("shard_pairs", 256))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        ds = xr.open_zarr(store, chunks=chunks, consolidated=False, zarr_format=3,
                          drop_variables=[DONE_VAR])
    if validate:
        validate_cube(ds, where=url)
    return ds


def cube_attrs(cfg, *, split_plan_json: str | None = None) -> dict[str, Any]:
    """Dataset attributes for a build: schema, units, the run configuration (no credentials)."""
    from .config import RunConfig

    from .masking import policy_attrs

    assert isinstance(cfg, RunConfig)
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "lensarray_version": __version__,
        "pixel_scale": cfg.run.pixel_scale,
        "pixel_scale_unit": "arcsec/pixel",
        "zero_point": cfg.run.zero_point,
        "unit": "nanomaggy",
        "seed": cfg.run.seed,
        "n_pairs": cfg.run.n_pairs,
        "shard_pairs": cfg.run.shard_pairs,
        "chunk_pairs": cfg.run.chunk_pairs,
        "config": cfg.to_json(),
        "null_injection": int(cfg.run.null),
        "core_radius_px": cfg.diagnostics.core_radius,
        "core_centre": cfg.diagnostics.core_centre,
        "split_plan": split_plan_json or "",
        "lens_stamp": "host + arc",
    }
    attrs.update(policy_attrs(cfg))  # core mask, control stamp, S/N definitions and floor
    return attrs
