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
- Before the marker, ``shard_digest`` records a checksum (crc32c; zlib CRC-32 in cubes made
  before the ``shard_digest_algorithm`` attr) of every variable's bytes of that shard,
  seeded with the cube's token, the shard index and its pair range: a deleted chunk (read back as
  the fill value), a chunk copied from another shard or another cube, and a truncated file all
  fail :func:`check_shards`, although each chunk's own crc32c is valid.
- Integer fill values are the schema's (``split`` -1 = "unbuilt/unassigned"), so an unwritten
  pair never reads as the train split.
- One writer at a time: :class:`StoreLock` keeps a ``lensarray.lock`` object in the store that
  names its owner, is refreshed while writing and is taken over only when stale.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from . import __version__
from .errors import BadInputError, IncompleteCubeError, StoreLockedError
from .quantize import apply_quantization, quantization_attrs
from .schema import SCHEMA_VERSION, VARIABLES, CubeSchemaError, check_schema_version, template, validate_cube
from .shard_read import read_pairs

__all__ = [
    "StoreExistsError",
    "DONE_VAR",
    "DIGEST_VAR",
    "LOCK_NAME",
    "StoreLock",
    "WriteResult",
    "zarr_store",
    "store_exists",
    "store_kind",
    "create_store",
    "open_group",
    "write_shard",
    "write_cube",
    "completed_shards",
    "check_shards",
    "cube_token",
    "digest_algorithm",
    "DIGEST_ATTR",
    "shard_bounds",
    "open_dataset",
    "stored_cube_attrs",
    "check_removable",
    "remove_store",
]

log = logging.getLogger(__name__)

#: Name of the per-shard completion array (dims: shard); dropped when opening as a cube.
DONE_VAR = "shard_done"
#: Per-shard content digests (dims: shard, variable), written just before the done marker.
DIGEST_VAR = "shard_digest"
#: Cube attr naming the shard digests' checksum: "crc32c" (google-crc32c, zarr's own checksum
#: library: 3-4x cheaper in CPU than zlib's CRC-32 over a shard's ~44 MB of values). Cubes made before
#: it have no such attr and zlib CRC-32 digests ("crc32"); both verify.
DIGEST_ATTR = "shard_digest_algorithm"
#: The algorithm new cubes record.
DIGEST_ALGORITHM = "crc32c"
_DIGEST_ALGORITHMS = ("crc32", "crc32c")
#: The writer's lock object at the store root (not a zarr node; zarr ignores it).
LOCK_NAME = "lensarray.lock"
# zarr warns about any non-zarr object while listing a group; the lock is ours and expected
_LOCK_WARNING = f"Object at {LOCK_NAME} is not recognized"
warnings.filterwarnings("ignore", message=_LOCK_WARNING)

#: Zarr nodes of a cube besides its variables.
_COORDS = ("pair", "band", "y", "x")

#: A lock not refreshed for this long (seconds) is stale and may be taken over.
LOCK_STALE_SECONDS = float(os.environ.get("LENSARRAY_LOCK_STALE_SECONDS", "120"))
#: How often (seconds) the writer refreshes its lock.
LOCK_REFRESH_SECONDS = float(os.environ.get("LENSARRAY_LOCK_REFRESH_SECONDS", "15"))


class StoreExistsError(BadInputError, FileExistsError):
    """The destination exists and the caller did not ask to overwrite or resume, or what is
    there is not a lensarray store of the kind being written (never removed)."""


def nothing_to_resume(url: str) -> StoreExistsError:
    """The refusal of ``--resume`` where no cube exists (raised before any planning)."""
    return StoreExistsError(f"--resume: nothing to resume at {url} (no cube there); drop --resume to build it")


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def zarr_store(url: str, storage_options: dict | None = None, *, read_only: bool = False):
    """A zarr v3 store for a local path or an fsspec URL (``s3://bucket/key``)."""
    if _is_remote(url):
        from zarr.storage import FsspecStore

        opts = dict(storage_options or {})
        if url.startswith("s3://"):
            opts.setdefault("skip_instance_cache", True)
            from .storage import S3_TIMEOUTS, keep_for_closing

            opts.setdefault("config_kwargs", S3_TIMEOUTS)
        store = FsspecStore.from_url(url, storage_options=opts, read_only=read_only)
        keep_for_closing(store.fs)  # closed by the CLI at exit, not leaked when dropped mid-run
        return store
    from zarr.storage import LocalStore

    path = url[len("file://") :] if url.startswith("file://") else url
    return LocalStore(path, read_only=read_only)


def _fs_and_path(url: str, storage_options: dict | None = None):
    import fsspec

    opts = dict(storage_options or {})
    if url.startswith("s3://"):
        opts.setdefault("skip_instance_cache", True)
    fs, path = fsspec.core.url_to_fs(url, **opts)
    from .storage import keep_for_closing

    return keep_for_closing(fs), path.rstrip("/")


def _entries(fs, path: str) -> list[str]:
    """Names directly under ``path`` (the writer's lock excluded)."""
    try:
        names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False, refresh=True)]
    except TypeError:  # filesystems without ``refresh``
        names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    return [n for n in names if n != LOCK_NAME]


def store_exists(url: str, storage_options: dict | None = None) -> bool:
    """True when anything (a cube or not) is already stored at ``url`` (a lock alone is nothing)."""
    fs, path = _fs_and_path(url, storage_options)
    if not fs.exists(path):
        return False
    return not fs.isdir(path) or len(_entries(fs, path)) > 0


def store_kind(url: str, storage_options: dict | None = None) -> str | None:
    """``"cube"``, ``"hosts"`` (a host cube from ``lensarray ingest``) or ``None`` (anything else)."""
    try:
        attrs = dict(zarr.open_group(zarr_store(url, storage_options, read_only=True), mode="r", zarr_format=3).attrs)
    except Exception:  # not a zarr v3 group at all
        return None
    if attrs.get("kind") == "lensarray-hosts":
        return "hosts"
    if "schema_version" in attrs and "config" in attrs:
        return "cube"
    return None


_KIND_NAMES = {"cube": "a lensarray cube", "hosts": "a lensarray host cube"}


def check_removable(url: str, storage_options: dict | None = None, *, kind: str = "cube") -> None:
    """Raise :class:`StoreExistsError` unless :func:`remove_store` may delete ``url`` (nothing
    there, or a lensarray store of ``kind`` and nothing else); removes nothing."""
    if kind not in _KIND_NAMES:
        raise ValueError(f"kind = {kind!r}: allowed one of {', '.join(_KIND_NAMES)}")
    fs, path = _fs_and_path(url, storage_options)
    if not fs.exists(path):
        return
    want = _KIND_NAMES[kind]
    if not fs.isdir(path):
        raise StoreExistsError(f"{url} is a file, not {want}: refusing to remove it (choose another --out)")
    found = store_kind(url, storage_options)
    if found != kind:
        what = _KIND_NAMES.get(found, "not a lensarray store") if found else "not a lensarray store"
        what = f"holds {what}" if found else what
        raise StoreExistsError(f"{url} {what}, not {want}: refusing to remove it (choose another --out)")
    group = zarr.open_group(
        zarr_store(url, storage_options, read_only=True), mode="r", zarr_format=3, use_consolidated=False
    )
    members = set(group.keys())
    if kind == "cube":
        allowed = set(VARIABLES) | set(_COORDS) | {DONE_VAR, DIGEST_VAR}
        members &= allowed
    files = [str(p) for p in fs.find(path, withdirs=False)]
    for f in files:
        rel = f[len(path) :].lstrip("/").split("/")
        ok = (
            rel == ["zarr.json"]
            or rel == [LOCK_NAME]
            or (len(rel) >= 2 and rel[0] in members and (rel[1:] == ["zarr.json"] or rel[1] == "c"))
        )
        if not ok:
            raise StoreExistsError(
                f"{url} holds {'/'.join(rel)!r}, which lensarray did not write: "
                "refusing to remove it (choose another --out)"
            )


def remove_store(url: str, storage_options: dict | None = None, *, kind: str = "cube") -> None:
    """Delete the lensarray store at ``url`` (only for an explicit ``overwrite``).

    Refuses with :class:`StoreExistsError`, before removing anything, unless ``url`` holds a
    lensarray store of ``kind`` ("cube" or "hosts") and nothing else: every file must be a zarr
    node of that store (metadata or chunk). A plain file, a folder with other files, a foreign
    Zarr store or a store of the other kind is never removed. The writer's lock is kept.
    """
    check_removable(url, storage_options, kind=kind)
    fs, path = _fs_and_path(url, storage_options)
    if not fs.exists(path):
        return
    for name in _entries(fs, path):
        fs.rm(f"{path}/{name}", recursive=True)
    log.info("removed the %s at %s", kind, url)


def shard_bounds(n_pairs: int, shard_pairs: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` pair index ranges of every shard (the last may be short)."""
    return [(s, min(s + shard_pairs, n_pairs)) for s in range(0, n_pairs, shard_pairs)]


#: Codec of each image plane, chosen by measurement (benchmarks/bench_codecs.py, one shard of
#: default pairs): (compressor, level, shuffle); zstd without shuffle is zarr's ZstdCodec, the rest
#: BloscCodec. Noisy float32 hosts barely compress (zstd 3: 7%; bit shuffle + lz4: 14%, at half
#: zstd's time); the synthetic invvar (a smooth plane, 12 mantissa bits) shrinks 24x with byte
#: shuffle + zstd 1; the arc (noise-free, but spread by the PSF over the whole stamp) 16% with
#: byte shuffle + lz4; maskbits (mostly 0) 2300x with plain zstd.
_Cname = Literal["lz4", "lz4hc", "blosclz", "snappy", "zlib", "zstd"]
_Shuffle = Literal["noshuffle", "shuffle", "bitshuffle"]
IMAGE_CODECS: dict[str, tuple[_Cname, int, _Shuffle]] = {
    "host": ("lz4", 5, "bitshuffle"),
    "invvar": ("zstd", 1, "shuffle"),
    "arc": ("lz4", 5, "shuffle"),
    "maskbits": ("zstd", 1, "noshuffle"),
}
#: Quantised planes ([quantize]) keep few significant bits: bit shuffle (host 3.5x, arc at 12 bits 1.9x).
QUANTIZED_CODECS: dict[str, tuple[_Cname, int, _Shuffle]] = {
    "host": ("lz4", 5, "bitshuffle"),
    "arc": ("lz4", 5, "bitshuffle"),
}
#: Blosc block size (bytes) of a plane's codec; absent: 0, Blosc's own choice (for zstd level 1
#: between 16 and 64 kB, judging by its speed). zstd pays a set-up per block: on the invvar plane
#: 256 kB blocks compress 1.5x and decompress 1.8x faster than Blosc's choice, to the same size
#: (2.0 vs 2.1 kB/pair; benchmarks/bench_codecs.py, issue #14). The lz4 planes gain nothing.
BLOSC_BLOCKSIZE: dict[str, int] = {"invvar": 2**18}


def _codecs_for(name: str, quantized: set) -> list:
    from zarr.codecs import BloscCodec

    if name not in IMAGE_CODECS:
        return [ZstdCodec(level=3), Crc32cCodec()]
    cname, level, shuffle = QUANTIZED_CODECS[name] if name in quantized else IMAGE_CODECS[name]
    if cname == "zstd" and shuffle == "noshuffle":
        return [ZstdCodec(level=level), Crc32cCodec()]
    return [
        BloscCodec(
            cname=cname,
            clevel=level,
            shuffle=shuffle,
            typesize=np.dtype(VARIABLES[name].dtype).itemsize,
            blocksize=BLOSC_BLOCKSIZE.get(name, 0),
        ),
        Crc32cCodec(),
    ]


def _encoding(ds: xr.Dataset, chunk_pairs: int, shard_pairs: int) -> dict:
    quantized = set(json.loads(ds.attrs.get("quantization") or "{}"))
    enc: dict[str, dict] = {}
    for key, var in ds.data_vars.items():
        name = str(key)
        rest = tuple(var.shape[1:])
        compressors = _codecs_for(name, quantized)
        if var.ndim >= 3:
            enc[name] = {"chunks": (chunk_pairs, *rest), "shards": (shard_pairs, *rest), "compressors": compressors}
        else:
            enc[name] = {"chunks": (shard_pairs, *rest), "compressors": compressors}
    return enc


def create_store(
    url: str,
    *,
    n_pairs: int,
    bands: list[str],
    size: int,
    chunk_pairs: int,
    shard_pairs: int,
    attrs: dict[str, Any],
    storage_options: dict | None = None,
    overwrite: bool = False,
) -> None:
    """Write the template (metadata and coordinates only), the empty ``shard_digest`` and
    ``shard_done`` arrays.

    Raises :class:`StoreExistsError` before touching anything when ``url`` is occupied and
    ``overwrite`` is False, or when what is there is not a lensarray cube.
    """
    if store_exists(url, storage_options):
        if not overwrite:
            raise StoreExistsError(f"{url} already exists: pass --overwrite to replace it or --resume to finish it")
        remove_store(url, storage_options, kind="cube")
    ds = template(n_pairs, bands, size, attrs=attrs, chunk_pairs=shard_pairs)
    enc = _encoding(ds, chunk_pairs, shard_pairs)
    for name, spec in VARIABLES.items():
        if np.dtype(spec.dtype).kind in "iub":  # floats carry NaN through _FillValue already
            enc[name]["fill_value"] = spec.fill
    store = zarr_store(url, storage_options)
    # mode "a": the store holds only the writer's lock here (emptiness was checked above)
    ds.to_zarr(store, compute=False, zarr_format=3, mode="a", consolidated=False, encoding=enc)
    n_shards = len(shard_bounds(n_pairs, shard_pairs))
    group = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    group.create_array(
        DIGEST_VAR,
        shape=(n_shards, len(VARIABLES)),
        chunks=(1, len(VARIABLES)),
        dtype="uint32",
        fill_value=0,
        dimension_names=["shard", "variable"],
        compressors=[Crc32cCodec()],
        attributes={
            "variables": list(VARIABLES),
            "description": f"checksum (the cube attr {DIGEST_ATTR}: crc32c; zlib CRC-32 when absent) of "
            "each variable's bytes in the shard, seeded with (cube token, shard index, pair range, variable name)",
        },
    )
    group.create_array(
        DONE_VAR,
        shape=(n_shards,),
        chunks=(1,),
        dtype="int8",
        fill_value=0,
        dimension_names=["shard"],
        compressors=[Crc32cCodec()],
        attributes={"description": "1 once the shard's data and digest are fully written"},
    )


def open_group(
    url: str, storage_options: dict | None = None, *, mode: Literal["r", "r+", "a", "w", "w-"] = "r+"
) -> zarr.Group:
    """The zarr group of a cube, for shard writes and raw reads."""
    # never the consolidated metadata: it is a convenience for plain xr.open_zarr, written once at
    # the end of a build; the arrays' own metadata is what lensarray checks and writes against
    return zarr.open_group(
        zarr_store(url, storage_options, read_only=(mode == "r")), mode=mode, zarr_format=3, use_consolidated=False
    )


# --------------------------------------------------------------------------------------
# digests
# --------------------------------------------------------------------------------------
def cube_token(attrs: dict) -> str:
    """A short hex token of what a cube is (its configuration and split plan): binds every shard
    digest to this cube, so a shard copied from another cube (or an older build) is caught."""
    import hashlib

    config = attrs.get("config", "{}")
    config = dict(json.loads(config) if isinstance(config, str) else config)
    config.pop("cluster", None)  # where it ran is not what it is (a resume may change it)
    text = json.dumps([config, attrs.get("split_plan", "")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def digest_algorithm(attrs: dict) -> str:
    """The shard digests' algorithm recorded in a cube's ``attrs`` (``"crc32"`` when absent: the
    cubes made before the attr); :class:`CubeSchemaError` for an unknown one."""
    algorithm = attrs.get(DIGEST_ATTR) or "crc32"
    if algorithm not in _DIGEST_ALGORITHMS:
        raise CubeSchemaError(f"attribute {DIGEST_ATTR} = {algorithm!r}: allowed one of {list(_DIGEST_ALGORITHMS)}")
    return str(algorithm)


def _digest(token: str, shard_index: int, start: int, stop: int, name: str, data, algorithm: str = "crc32") -> int:
    values = np.ascontiguousarray(np.asarray(data).astype(VARIABLES[name].dtype, copy=False))
    head = f"{token}:{shard_index}:{start}:{stop}:{name}:{values.shape}".encode()
    if algorithm == "crc32c":
        import google_crc32c

        return int(google_crc32c.extend(google_crc32c.value(head), values.reshape(-1).view(np.uint8)))
    return zlib.crc32(memoryview(values).cast("B"), zlib.crc32(head))


def write_shard(
    group: zarr.Group,
    shard_index: int,
    start: int,
    stop: int,
    arrays: dict[str, np.ndarray],
    *,
    token: str | None = None,
) -> None:
    """Write every variable of pairs ``[start, stop)`` (one whole shard), its digest, then its
    done marker.

    The variables are written concurrently in one pass of zarr's event loop (their metadata
    opened together, every array's chunks encoded and stored at once): written one by one, each
    array costs a metadata read, a selection, a codec pipeline run and a store call in sequence,
    which made the write 3x its floor. The digest is written only after every variable has
    landed, the marker only after the digest, so a shard interrupted half-way is rewritten on
    resume.
    """
    _write_shard(group.store_path, dict(group.attrs), shard_index, start, stop, arrays, token=token)


def _write_shard(
    root,
    attrs: dict,
    shard_index: int,
    start: int,
    stop: int,
    arrays: dict[str, np.ndarray],
    *,
    token: str | None = None,
    handles: list | None = None,
    quantized: bool = False,
) -> None:
    """``quantized``: ``arrays`` already hold the stored values (the recorded quantisation
    applied, as :func:`lensarray.pipeline.build`'s kernel returns them), so it is not applied
    again (idempotent, but a pass over the host and invvar planes)."""
    from zarr.core.sync import sync

    missing = [k for k in VARIABLES if k not in arrays]
    if missing:
        raise ValueError(f"shard {shard_index}: arrays missing variables {missing}")
    if not quantized:
        arrays = apply_quantization(arrays, attrs.get("quantization", ""))
    token = cube_token(attrs) if token is None else token
    algorithm = digest_algorithm(attrs)
    data: dict[str, np.ndarray] = {}
    digests = np.zeros(len(VARIABLES), np.uint32)
    for j, name in enumerate(VARIABLES):
        data[name] = np.ascontiguousarray(np.asarray(arrays[name]).astype(VARIABLES[name].dtype, copy=False))
        if data[name].shape[0] != stop - start:
            raise ValueError(f"shard {shard_index}: {name} has {data[name].shape[0]} pairs, expected {stop - start}")
        digests[j] = _digest(token, shard_index, start, stop, name, data[name], algorithm)
    sync(_write_shard_async(root, shard_index, start, stop, data, digests, handles))


async def _open_array(root, name: str):
    """The async array ``name`` under ``root`` (a zarr ``StorePath``), or None when absent."""
    from zarr import AsyncArray

    try:
        return await AsyncArray.open(root / name, zarr_format=3)
    except FileNotFoundError:  # zarr's ArrayNotFoundError derives from it
        return None


async def _gather_all(coroutines) -> list:
    """Run ``coroutines`` concurrently; wait for every one, then raise the first failure (so no
    write of a failed shard is still in flight when the task is retried)."""
    import asyncio

    results = await asyncio.gather(*coroutines, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


async def _open_shard_arrays(root) -> list:
    """Async handles of every variable, then the digest (None in cubes made before digests
    existed) and the done marker, opened concurrently; :class:`CubeSchemaError` if one is missing."""
    names = list(VARIABLES)
    handles = await _gather_all([_open_array(root, name) for name in (*names, DIGEST_VAR, DONE_VAR)])
    absent = [
        name
        for name, h in zip((*names, DIGEST_VAR, DONE_VAR), handles, strict=True)
        if h is None and name != DIGEST_VAR
    ]
    if absent:
        raise CubeSchemaError(f"{root} is not a whole lensarray cube: no array {absent[0]!r}")
    return handles


def _whole_chunk_objects(
    handles: list, names: list[str], data: dict[str, np.ndarray], start: int, stop: int
) -> tuple[list, list]:
    """Encode, in this thread, every variable whose one stored object (a shard of an image plane,
    the one chunk of a per-pair variable) is exactly pairs ``[start, stop)``, with the array's
    own codecs (each codec's ``_encode_sync``; for image planes zarr's ``ShardingCodec`` encodes
    the whole shard, inner chunks, index and checksums).

    Returns ``(objects, rest)``: ``objects`` are ``(store path, bytes or None)`` pairs (None: the
    object holds only the fill value and is removed, as zarr does), ``rest`` the ``(handle,
    name)`` pairs still to be written through zarr's ``setitem`` (an array whose codecs have no
    synchronous encoder, or whose objects are not aligned with the shard). Why: through
    ``setitem`` every array costs zarr's per-array machinery (selection, codec-pipeline batches,
    one thread hop per inner chunk), ~2 ms for each of the 32 per-pair arrays of ~1 kB: the
    write was 2-3x its floor. The bytes are zarr's own: the chunk key from the metadata, a short
    last object padded with the fill value (``tests/test_store.py`` compares the files with
    zarr's writes).
    """
    from zarr.abc.codec import ArrayBytesCodec, BytesBytesCodec
    from zarr.codecs import ShardingCodec
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()
    objects: list = []
    rest: list = []
    for name, h in zip(names, handles, strict=False):
        meta = h.metadata
        codecs = list(meta.codecs)
        chunk = tuple(meta.chunk_grid.chunk_shape)
        values = data[name]
        direct = (
            bool(codecs)
            and isinstance(codecs[0], ArrayBytesCodec)
            and all(isinstance(c, BytesBytesCodec) for c in codecs[1:])
            and all(hasattr(c, "_encode_sync") for c in codecs)
            and start % chunk[0] == 0
            and (stop - start == chunk[0] or stop == meta.shape[0])
            and tuple(chunk[1:]) == tuple(meta.shape[1:])
        )
        if not direct:
            rest.append((h, name))
            continue
        fill = meta.fill_value
        key = meta.encode_chunk_key((start // chunk[0],) + (0,) * (len(chunk) - 1))
        fill_np = np.asarray(fill.item() if hasattr(fill, "item") else fill, dtype=values.dtype)
        sharded = isinstance(codecs[0], ShardingCodec)  # it elides fill-only inner chunks itself
        if not sharded and np.array_equal(
            values, np.broadcast_to(fill_np, values.shape), equal_nan=values.dtype.kind == "f"
        ):
            objects.append((h.store_path / key, None))  # zarr stores no chunk equal to the fill value
            continue
        if values.shape != chunk:
            padded = np.full(chunk, fill_np, dtype=values.dtype)
            padded[: values.shape[0]] = values
            values = padded
        spec = ArraySpec(shape=chunk, dtype=meta.dtype, fill_value=fill, config=h.config, prototype=proto)
        encoded = codecs[0]._encode_sync(proto.nd_buffer.from_ndarray_like(values), spec)
        for codec in codecs[1:]:
            if encoded is not None:
                encoded = codec._encode_sync(encoded, spec)
        objects.append((h.store_path / key, encoded))
    return objects, rest


async def _store_object(path, buffer) -> None:
    if buffer is None:
        await path.delete()
    else:
        await path.set(buffer)


async def _write_shard_async(
    root,
    shard_index: int,
    start: int,
    stop: int,
    data: dict[str, np.ndarray],
    digests: np.ndarray,
    handles: list | None = None,
) -> None:
    if handles is None:
        handles = await _open_shard_arrays(root)
    names = list(VARIABLES)
    objects, rest = _whole_chunk_objects(handles, names, data, start, stop)
    await _gather_all(
        [h.setitem(slice(start, stop), data[name]) for h, name in rest]
        + [_store_object(path, buffer) for path, buffer in objects]
    )
    digest_array, done_array = handles[-2], handles[-1]
    if digest_array is not None:  # cubes made before digests existed have none
        await digest_array.setitem(shard_index, digests)
    await done_array.setitem(shard_index, np.int8(1))


def _array(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of a cube's group; :class:`CubeSchemaError` when it is not an array."""
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise CubeSchemaError(f"{name!r} in the cube is a {type(node).__name__}, not an array")
    return node


def _int_attr(attrs: dict, name: str, default: int) -> int:
    """An integer attribute of a cube (``default`` when absent); :class:`CubeSchemaError` otherwise."""
    value = attrs.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise CubeSchemaError(f"attribute {name} = {value!r}: allowed an integer")
    try:
        return int(value)
    except ValueError:
        raise CubeSchemaError(f"attribute {name} = {value!r}: allowed an integer") from None


def completed_shards(group: zarr.Group) -> np.ndarray:
    """Boolean array, one entry per shard: True when its done marker is set."""
    return np.asarray(_array(group, DONE_VAR)[:]) == 1


def check_shards(
    group: zarr.Group,
    shards=None,
    *,
    token: str | None = None,
    on_shard: Callable[[int], None] | None = None,
    inspect: Callable[[str, np.ndarray], str | None] | None = None,
) -> dict[int, list[str]]:
    """Read every variable of each finished shard and compare it with the shard's digest.

    Returns ``{shard index: [problem, ...]}`` for every shard that is unreadable (checksum,
    truncation), has no digest, or whose content does not match its digest (a deleted chunk, a
    chunk copied from another shard or cube, stale data). Shards without a done marker are not
    checked (they are incomplete, not bad). ``shards`` restricts the check; ``inspect(name,
    data)`` may add one problem per variable read (e.g. NaN pixels), so data is read once.
    """
    attrs = dict(group.attrs)
    token = cube_token(attrs) if token is None else token
    algorithm = digest_algorithm(attrs)
    n = int(_array(group, "pair").shape[0])
    host_shards = _array(group, "host").shards
    bounds = shard_bounds(n, _int_attr(attrs, "shard_pairs", host_shards[0] if host_shards else n))
    done = completed_shards(group)
    stored = np.asarray(_array(group, DIGEST_VAR)[:]) if DIGEST_VAR in group else None
    recorded = dict(_array(group, DIGEST_VAR).attrs).get("variables") if stored is not None else None
    order = [str(v) for v in recorded] if isinstance(recorded, list) else list(VARIABLES)
    bad: dict[int, list[str]] = {}
    # each array opened once, not per shard: an open reads and parses its metadata (~2.5 ms), which
    # at 10^6 pairs (3,907 shards x 36 arrays) was minutes of a serial verify
    arrays: dict[str, zarr.Array | Exception] = {}
    for name in VARIABLES:
        try:
            arrays[name] = _array(group, name)
        except Exception as exc:  # reported per shard below, as an unreadable variable
            arrays[name] = exc
    for i in range(len(bounds)) if shards is None else shards:
        if not done[i]:
            continue
        a, b = bounds[i]
        where = f"shard {i} (pairs {a}-{b - 1})"
        if stored is None or not stored[i].any():
            bad.setdefault(i, []).append(f"{where}: no content digest recorded")
        for name in VARIABLES:
            try:
                node = arrays[name]
                if isinstance(node, Exception):
                    raise node
                data = read_pairs(node, a, b)  # zarr's values; whole shards decoded into place
            except Exception as exc:  # checksum mismatch, truncated or undecodable chunk
                bad.setdefault(i, []).append(
                    f"{where}: {name} unreadable ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:160] if str(exc) else ''})"
                )
                continue
            found = inspect(name, data) if inspect else None
            if found:
                bad.setdefault(i, []).append(f"{where}: {found}")
            if stored is not None and stored[i].any() and name in order:
                if _digest(token, i, a, b, name, data, algorithm) != int(stored[i][order.index(name)]):
                    bad.setdefault(i, []).append(
                        f"{where}: {name} does not match the shard's digest "
                        "(a missing, swapped, stale or altered chunk)"
                    )
        if on_shard:
            on_shard(i)
    return bad


# --------------------------------------------------------------------------------------
# the writer's lock
# --------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StoreLock:
    """Exclusive writer lock: a ``lensarray.lock`` JSON object in the store naming its owner
    (host, pid, start time), refreshed every :data:`LOCK_REFRESH_SECONDS` while held.

    A lock is stale (and taken over) when it was not refreshed for :data:`LOCK_STALE_SECONDS`,
    or when its owner ran on this host and that process is gone. Creation is exclusive
    (``O_EXCL`` locally, a conditional PUT on S3), and every acquisition reads the lock back, so
    of two writers racing for a stale lock only one proceeds. Raises :class:`StoreLockedError`.
    """

    def __init__(self, url: str, storage_options: dict | None = None, *, purpose: str = "build"):
        self.url = url
        self.fs, path = _fs_and_path(url, storage_options)
        self.path = f"{path}/{LOCK_NAME}"
        self.root = path
        self.local = not _is_remote(url)
        self.nonce = uuid.uuid4().hex
        self.purpose = purpose
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._made_root = False

    def _record(self, since: float) -> bytes:
        return json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "since": since,
                "time": time.time(),
                "purpose": self.purpose,
                "nonce": self.nonce,
            }
        ).encode()

    def _read(self) -> dict | None:
        try:
            raw = self.fs.cat_file(self.path)
        except (FileNotFoundError, NotADirectoryError):  # no lock (or the store is a plain file)
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"time": 0.0}  # unreadable: stale

    def _stale(self, rec: dict) -> bool:
        if time.time() - float(rec.get("time", 0.0)) > LOCK_STALE_SECONDS:
            return True
        return rec.get("host") == socket.gethostname() and not _pid_alive(int(rec.get("pid", -1)))

    def _create(self, data: bytes) -> bool:
        """Exclusive create; False when the lock object exists."""
        if self.local:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        if self.fs.exists(self.path):
            return False
        try:
            self.fs.pipe_file(self.path, data, mode="create")
        except (FileExistsError, OSError) as exc:
            if isinstance(exc, FileExistsError) or "Precondition" in str(exc):
                return False
            raise
        return True

    def _put(self, data: bytes) -> None:
        if self.local:
            tmp = f"{self.path}.{self.nonce}"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        else:
            self.fs.pipe_file(self.path, data)

    def acquire(self) -> StoreLock:
        if self.local and not os.path.isdir(self.root):
            os.mkdir(self.root)  # the parent was checked by check_destination
            self._made_root = True
        self.since = time.time()
        data = self._record(self.since)
        if not self._create(data):
            rec = self._read() or {"time": 0.0}
            if not self._stale(rec):
                raise StoreLockedError(self._locked_message(rec))
            log.warning("taking over the stale lock of %s (owner %s:%s)", self.url, rec.get("host"), rec.get("pid"))
            self._put(data)
            time.sleep(0.05)  # let a racing taker's write land before reading back
        rec = self._read() or {}
        if rec.get("nonce") != self.nonce:
            raise StoreLockedError(self._locked_message(rec))
        self._thread = threading.Thread(target=self._refresh, name="lensarray-lock", daemon=True)
        self._thread.start()
        return self

    def check(self) -> None:
        """Raise :class:`StoreLockedError` now if another writer holds a fresh lock (nothing is
        taken: callers fail fast before expensive planning, then :meth:`acquire` decides)."""
        rec = self._read()
        if rec is not None and not self._stale(rec):
            raise StoreLockedError(self._locked_message(rec))

    def _locked_message(self, rec: dict) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(rec.get("since", rec.get("time", 0)))))
        return (
            f"{self.url} is being written by another lensarray {rec.get('purpose', 'writer')} "
            f"(host {rec.get('host', '?')}, pid {rec.get('pid', '?')}, since {since}): wait for it to finish; "
            f"a lock not refreshed for {LOCK_STALE_SECONDS:.0f} s is taken over"
        )

    def _refresh(self) -> None:
        while not self._stop.wait(LOCK_REFRESH_SECONDS):
            try:
                rec = self._read() or {}
                if "nonce" not in rec and rec.get("time") == 0.0:
                    # unreadable this time (e.g. an eventually consistent store mid-write): only a
                    # record that parses and names another writer is a takeover
                    log.warning("could not read the lock of %s; refreshing it anyway", self.url)
                elif rec.get("nonce") != self.nonce:
                    log.error("the lock of %s was taken over by %s:%s", self.url, rec.get("host"), rec.get("pid"))
                    return
                self._put(self._record(self.since))
            except Exception as exc:  # a transient storage error must not kill the build
                log.warning("could not refresh the lock of %s: %s", self.url, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            rec = self._read() or {}
            if rec.get("nonce") == self.nonce:
                self.fs.rm_file(self.path) if not self.local else os.remove(self.path)
            if self._made_root and not os.listdir(self.root):
                os.rmdir(self.root)
        except OSError as exc:
            log.warning("could not remove the lock of %s: %s", self.url, exc)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------------------
# the one writer
# --------------------------------------------------------------------------------------
@dataclass
class WriteResult:
    """Outcome of :func:`write_cube`."""

    url: str
    n_shards: int
    shards_written: int
    repaired: list[int] = field(default_factory=list)


def stored_cube_attrs(url: str, storage_options: dict | None = None) -> dict:
    """The attrs of the lensarray cube at ``url``; :class:`CubeSchemaError` for anything else."""
    try:
        attrs = dict(open_group(url, storage_options, mode="r").attrs)
    except Exception as exc:  # not a zarr v3 group (a folder, a file, zarr v2, garbage zarr.json)
        raise CubeSchemaError(f"{url} is not a lensarray cube ({type(exc).__name__})") from None
    check_schema_version(attrs, where=url, for_build=True)
    return attrs


def _config_difference(mine: dict, theirs: dict) -> list[str]:
    mine, theirs = dict(mine), dict(theirs)
    mine.pop("cluster", None), theirs.pop("cluster", None)
    keys = sorted(set(mine) | set(theirs))
    return [
        f"{s}.{k}"
        for s in keys
        for k in sorted(set(mine.get(s, {})) | set(theirs.get(s, {})))
        if mine.get(s, {}).get(k) != theirs.get(s, {}).get(k)
    ]


def _shard_writes(
    ds: xr.Dataset,
    url: str,
    storage_options,
    bounds,
    todo,
    token: str,
    attrs: dict,
    render: Callable[[np.ndarray], dict] | None = None,
) -> list:
    """One delayed task per shard to write (key ``lensarray-write-<token>-<i>``), each owning
    its whole shard: blocks are rechunked to the shards first when they do not coincide.

    With ``render`` (the per-pair kernel ``ds`` was made of), each task renders its own pairs
    and writes them: one task per shard instead of the render task, one getitem task per
    variable (38) and the write, whose scheduling cost ~20% of the workers' CPU in the
    scheduler alone on 2 cores; the values are ``ds``'s by construction."""
    import dask
    import dask.array as da
    from dask.base import tokenize

    prefix = f"lensarray-write-{tokenize(url, token)}"
    # the stored attrs the writer needs (quantisation record, token), not the whole planning JSON
    attrs = {"quantization": attrs.get("quantization", ""), DIGEST_ATTR: attrs.get(DIGEST_ATTR, "")}
    if render is not None:
        fused = dask.delayed(_render_and_write_shard_task, pure=True)
        return [
            fused(render, url, storage_options, i, *bounds[i], token, attrs, dask_key_name=f"{prefix}-{i}")
            for i in todo
        ]
    sizes = tuple(b - a for a, b in bounds)
    ds = ds[list(VARIABLES)]
    if any(not isinstance(ds[k].data, da.Array) or ds[k].data.chunks[0] != sizes for k in VARIABLES):
        ds = ds.chunk({"pair": sizes})
    # optimize_graph=False: a per-variable optimisation would fuse the shared render task into
    # each variable's getitem and render every block once per variable
    parts = {k: ds[k].data.to_delayed(optimize_graph=False).ravel() for k in VARIABLES}
    task = dask.delayed(_write_shard_task, pure=True)
    return [
        task(
            url,
            storage_options,
            i,
            *bounds[i],
            {k: parts[k][i] for k in VARIABLES},
            token,
            attrs,
            dask_key_name=f"{prefix}-{i}",
        )
        for i in todo
    ]


#: Per worker process: the opened arrays of the local cubes it writes, keyed by (path, cube
#: token). Opening a cube's 38 arrays (metadata read and parsed, codec pipelines built) cost as
#: much as a tenth of the shard write; a local store's array metadata is fixed by (path, token),
#: the token covering the whole configuration, so a rebuilt cube of the same token has the same
#: arrays. Remote stores are reopened per shard: their filesystem objects may be closed between
#: builds.
_OPENED: dict[tuple[str, str], tuple[Any, list]] = {}
_OPENED_MAX = 4


def _opened_arrays(url: str, token: str):
    """``(root StorePath, handles)`` of the local cube at ``url`` (cached per worker process)."""
    from zarr.core.sync import sync
    from zarr.storage import StorePath

    key = (os.path.abspath(url[len("file://") :] if url.startswith("file://") else url), token)
    if key not in _OPENED:
        root = StorePath(zarr_store(url))
        handles = sync(_open_shard_arrays(root))
        if len(_OPENED) >= _OPENED_MAX:
            _OPENED.pop(next(iter(_OPENED)))
        _OPENED[key] = (root, handles)
    return _OPENED[key]


def _write_shard_task(
    url: str,
    storage_options: dict | None,
    shard_index: int,
    start: int,
    stop: int,
    arrays: dict,
    token: str,
    attrs: dict,
    quantized: bool = False,
) -> int:
    if _is_remote(url):
        group = open_group(url, storage_options)
        _write_shard(
            group.store_path, dict(group.attrs), shard_index, start, stop, arrays, token=token, quantized=quantized
        )
    else:
        root, handles = _opened_arrays(url, token)
        _write_shard(root, attrs, shard_index, start, stop, arrays, token=token, handles=handles, quantized=quantized)
    return shard_index


def _render_and_write_shard_task(
    render: Callable[[np.ndarray], dict],
    url: str,
    storage_options: dict | None,
    shard_index: int,
    start: int,
    stop: int,
    token: str,
    attrs: dict,
) -> int:
    arrays = render(np.arange(start, stop, dtype=np.int64))  # the stored values (see write_cube)
    return _write_shard_task(url, storage_options, shard_index, start, stop, arrays, token, attrs, quantized=True)


def _progress_bar(total: int, initial: int, enabled: bool, desc: str):
    import sys

    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        desc=desc,
        unit="shard",
        file=sys.stderr,
        mininterval=0.5,
        dynamic_ncols=True,
    )


def write_cube(
    ds: xr.Dataset,
    url: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    repair: bool = False,
    client=None,
    storage_options: dict | None = None,
    progress: bool = False,
    on_shard_done: Callable[[int], None] | None = None,
    render: Callable[[np.ndarray], dict] | None = None,
) -> WriteResult:
    """Write a cube (lazy or in memory) to ``url`` in whole shards: the one writer.

    One task owns one shard (blocks are rechunked to shards when they differ), writes every
    variable, then the shard's content digest, then its done marker; a retried task rewrites
    identical bytes. The store is locked for the whole write (:class:`StoreLock`), and task keys
    carry a token of (destination, configuration), so concurrent builds never share results.
    Consolidated metadata is written once every shard is done.

    Parameters
    ----------
    ds
        A cube with the full schema and the build's attrs (from :func:`lensarray.lazy_cube` or
        :func:`lensarray.cube.open_cube`).
    url
        Local path or fsspec URL of the destination.
    resume
        Finish the cube at ``url``: only shards without a done marker are written; its stored
        configuration must equal ``ds``'s (cluster settings apart). Refused when nothing is there.
    overwrite
        Replace an existing lensarray cube at ``url`` (never anything else).
    repair
        With ``resume``: check every finished shard against its digest first and rewrite the bad.
    client
        A ``distributed.Client``; ``None`` computes in this process with the synchronous scheduler.
    storage_options
        fsspec options for ``url`` (never stored).
    progress
        A progress bar on stderr (shards), with or without a client. Off by default.
    on_shard_done
        Called with each shard index once its marker is written (in this process).
    render
        The per-pair kernel ``ds`` is made of (``pair ids -> {variable: array}``, e.g.
        :func:`lensarray.pipeline.build`'s): each shard task then renders and writes its own
        pairs in one task instead of taking ``ds``'s blocks. The caller guarantees that it
        returns ``ds``'s values, as stored (the recorded quantisation applied).
    """
    from .storage import check_destination

    if overwrite and resume:
        raise BadInputError("overwrite and resume exclude each other: choose one")
    if repair and not resume:
        raise BadInputError("repair needs resume (it rewrites the bad shards of an existing cube)")
    validate_cube(ds, where="the dataset to write")
    missing = [k for k in VARIABLES if k not in ds.variables]
    if missing or "config" not in ds.attrs or "shard_pairs" not in ds.attrs:
        raise CubeSchemaError(
            "the dataset to write is not a whole lensarray cube "
            f"({'missing ' + ', '.join(missing) if missing else 'no build attrs'}): "
            "make it with lensarray.lazy_cube"
        )
    n = int(ds.sizes["pair"])
    if n != int(ds.attrs.get("n_pairs", n)) or not np.array_equal(ds["pair"].values, np.arange(n)):
        raise CubeSchemaError(
            f"the dataset to write holds {n} of its {ds.attrs.get('n_pairs')} pairs (a "
            "selection): only a whole cube, pairs 0..n-1, can be written"
        )
    shard_pairs, chunk_pairs = int(ds.attrs["shard_pairs"]), int(ds.attrs.get("chunk_pairs", ds.attrs["shard_pairs"]))
    bounds = shard_bounds(n, shard_pairs)
    check_destination(url, storage_options)
    fs, path = _fs_and_path(url, storage_options)
    if fs.exists(path) and not fs.isdir(path):  # a plain file is never a store nor removed
        raise StoreExistsError(f"{url} is a file, not a lensarray cube: choose another --out")
    repaired: list[int] = []
    with warnings.catch_warnings(), StoreLock(url, storage_options, purpose="build"):
        warnings.filterwarnings("ignore", message=_LOCK_WARNING)
        exists = store_exists(url, storage_options)
        if resume:
            if not exists:
                raise nothing_to_resume(url)
            stored = stored_cube_attrs(url, storage_options)
            diff = _config_difference(json.loads(ds.attrs["config"]), json.loads(stored["config"]))
            if diff:
                raise BadInputError(f"--resume: the configuration differs from the stored one in {', '.join(diff)}")
            if stored.get("split_plan", "") != ds.attrs.get("split_plan", ""):
                raise BadInputError(f"--resume: the split plan differs from the one stored at {url}")
        else:
            if exists and not overwrite:
                raise StoreExistsError(f"{url} already exists: pass --overwrite to replace it or --resume to finish it")
            if exists:
                remove_store(url, storage_options, kind="cube")
            create_store(
                url,
                n_pairs=n,
                bands=[str(b) for b in ds["band"].values],
                size=int(ds.sizes["y"]),
                chunk_pairs=chunk_pairs,
                shard_pairs=shard_pairs,
                attrs=dict(ds.attrs),
                storage_options=storage_options,
            )
        group = open_group(url, storage_options)
        token = cube_token(dict(group.attrs))
        if repair:
            bad = check_shards(group, token=token)
            for i, problems in sorted(bad.items()):
                log.warning("repairing %s", problems[0])
                _array(group, DONE_VAR)[i] = 0  # rewritten below like any unfinished shard
            repaired = sorted(bad)
        done = completed_shards(group)
        todo = [i for i in range(len(bounds)) if not done[i]]
        writes = _shard_writes(ds, url, storage_options, bounds, todo, token, dict(group.attrs), render)
        bar = _progress_bar(len(bounds), len(bounds) - len(todo), progress, f"write {url}")
        written = 0

        def landed(i: int) -> None:
            nonlocal written
            written += 1
            bar.update(1)
            if on_shard_done:
                on_shard_done(i)

        try:
            if client is None:
                _compute_here(writes, landed)
            else:
                from distributed import as_completed

                for fut in as_completed(client.compute(writes, retries=2)):
                    landed(fut.result())
        finally:
            bar.close()
        if completed_shards(group).all():
            # every shard done: consolidated metadata lets a plain xr.open_zarr(url) open it quietly
            with warnings.catch_warnings():  # "not part of the v3 spec": known, and xarray reads it
                warnings.simplefilter("ignore", category=UserWarning)
                zarr.consolidate_metadata(zarr_store(url, storage_options), zarr_format=3)
    return WriteResult(url=url, n_shards=len(bounds), shards_written=written, repaired=repaired)


def _compute_here(writes: list, landed: Callable[[int], None]) -> None:
    """Compute the shard writes with the synchronous scheduler, reporting each as it lands."""
    import dask
    from dask.callbacks import Callback

    names = {w.key: w for w in writes}

    class _Landed(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if key in names:
                landed(int(result))

    if writes:
        with _Landed():
            dask.compute(*writes, scheduler="synchronous")


#: The codec pipeline of the arrays :func:`open_dataset` opens (and pickles to workers): zarr's
#: synchronous ``FusedCodecPipeline`` decodes a shard's inner chunks in the reading thread, without
#: a coroutine and a thread hop per chunk. Same bytes, same checksums; falls back to zarr's async
#: path on stores without synchronous IO (fsspec/S3).
READ_PIPELINE = "zarr.core.codec_pipeline.FusedCodecPipeline"


def open_dataset(
    url: str,
    *,
    storage_options: dict | None = None,
    chunks: str | dict | None = "shard",
    validate: bool = True,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open a cube lazily (see :func:`lensarray.cube.open_cube`)."""
    try:
        store = zarr_store(url, storage_options, read_only=True)
        group = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError) as exc:
        raise CubeSchemaError(f"{url} is not a lensarray cube (no Zarr v3 group there: {type(exc).__name__})") from None
    except ValueError as exc:  # LocalStore on a missing path
        raise CubeSchemaError(f"{url} is not a lensarray cube ({exc})") from None
    attrs = dict(group.attrs)
    check_schema_version(attrs, where=url)
    from .limits import check_declared_sizes

    check_declared_sizes(group, attrs, url)  # a crafted cube's sizes never drive a read
    done = completed_shards(group) if DONE_VAR in group else None
    if done is None:
        # written without lensarray's writer (plain xarray to_zarr, e.g. a toy cube): there is no
        # completion record to trust or refuse; said once, opened as is
        log.warning(
            "%s has no shard completion record (not written by lensarray's writer): its completeness cannot be checked",
            url,
        )
    elif not done.all() and not allow_incomplete:
        raise IncompleteCubeError(_incomplete_message(url, done))
    # any other value goes to xarray as given ("auto", a dict, None)
    read_chunks: Any = {"pair": _int_attr(attrs, "shard_pairs", 256)} if chunks == "shard" else chunks
    with warnings.catch_warnings(), zarr.config.set({"codec_pipeline.path": READ_PIPELINE}):
        warnings.simplefilter("ignore", category=UserWarning)
        ds = xr.open_zarr(
            store, chunks=read_chunks, consolidated=False, zarr_format=3, drop_variables=[DONE_VAR, DIGEST_VAR]
        )
    if validate:
        validate_cube(ds, where=url)
    if done is not None and not done.all():
        # unbuilt pairs are dropped, never served (their fill values would read as data)
        shard_pairs = _int_attr(attrs, "shard_pairs", 256)
        built = np.repeat(done, shard_pairs)[: ds.sizes["pair"]]
        ds = ds.isel(pair=np.flatnonzero(built))
        ds.attrs["unbuilt_shards"] = json.dumps(np.flatnonzero(~done).tolist())
    return ds


def _ranges(idx) -> str:
    idx = list(idx)
    out, k = [], 0
    while k < len(idx):
        j = k
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        out.append(str(idx[k]) if j == k else f"{idx[k]}-{idx[j]}")
        k = j + 1
    text = ", ".join(out[:8])
    return text + (f", ... ({len(out) - 8} more ranges)" if len(out) > 8 else "")


def _incomplete_message(url: str, done: np.ndarray) -> str:
    missing = np.flatnonzero(~done)
    return (
        f"{url} is incomplete: {missing.size} of {done.size} shards not built (shards {_ranges(missing)}); "
        f"finish it with `lensarray build --resume --out {url}` (or open with allow_incomplete=True "
        "to read only the built pairs)"
    )


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
        "quantization": quantization_attrs(cfg),
        DIGEST_ATTR: DIGEST_ALGORITHM,
    }
    attrs.update(policy_attrs(cfg))  # core mask, control stamp, S/N definitions and floor
    return attrs
