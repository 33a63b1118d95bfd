"""Whole shards of a cube's arrays decoded straight into the caller's array.

zarr decodes a sharded read in three steps: each inner chunk is decompressed into a buffer of its
own, copied into a buffer of the shard, and the shard copied into the result. For the pixel
arrays of a local cube (12 MB a shard) the two copies cost more than the decompression: one
worker-like thread read the four image arrays of a 10k cube at 0.12-0.18 CPU ms a pair through
zarr's ``FusedCodecPipeline`` and 0.24-0.28 through its default pipeline, against 0.05-0.07 to
decompress the same inner chunks into place. :func:`read_pairs` does the latter, with zarr's own
pieces wherever there is a choice: the store's synchronous ``get_sync`` for the bytes, the
sharding codec's reader for the shard index (and its checksum), and the ``numcodecs`` objects
zarr's Blosc / Zstd codecs wrap for the decompression. Each inner chunk's crc32c is checked as
zarr's ``crc32c`` codec checks it. Anything else (another layout or codec chain, a store without
synchronous reads such as fsspec's S3 store, a range that is not whole shards) is read by zarr as
before: the values are the same either way
(``tests/test_shard_read.py``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np

__all__ = ["read_pairs", "zarr_array_of"]

_EMPTY = 2**64 - 1  # offset and length of an inner chunk the shard does not store (fill value)


@dataclass(frozen=True)
class _Layout:
    """What :func:`_read_shard` needs to know of an array (see :func:`_layout`)."""

    store: Any
    shard: int  # pairs per shard
    inner: int  # pairs per inner chunk
    chunks_per_shard: tuple[int, ...]
    codec: Any  # the ShardingCodec (reads the shard index)
    decoder: Any  # numcodecs Blosc or Zstd
    checksum: bool  # inner chunks end in a crc32c


def _layout(array) -> _Layout | None:
    """The shard layout of ``array`` if :func:`read_pairs` can decode it itself: a store with
    synchronous reads (zarr's local and memory stores), chunked along the first axis only, one sharding codec whose index
    sits at the end, and inner chunks of ``bytes`` (native byte order) -> Blosc | Zstd [-> crc32c]."""
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec

    meta = getattr(array, "metadata", None)
    store = getattr(getattr(array, "store_path", None), "store", None)
    if meta is None or getattr(meta, "zarr_format", None) != 3 or not hasattr(store, "get_sync"):
        return None
    codecs = tuple(meta.codecs)
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec) or codecs[0].index_location != "end":
        return None
    sc = codecs[0]
    shard_shape = tuple(getattr(meta.chunk_grid, "chunk_shape", ()))
    inner_shape = tuple(sc.chunk_shape)
    rest = tuple(array.shape[1:])
    if len(shard_shape) != array.ndim or shard_shape[1:] != rest or inner_shape[1:] != rest:
        return None
    if shard_shape[0] % inner_shape[0] or getattr(array, "order", "C") != "C":
        return None
    inner = list(sc.codecs)
    checksum = bool(inner) and isinstance(inner[-1], Crc32cCodec)
    if checksum:
        inner.pop()
    if len(inner) != 2 or not isinstance(inner[0], BytesCodec):
        return None
    dtype = np.dtype(array.dtype)
    if dtype.itemsize > 1 and (inner[0].endian or sys.byteorder) != sys.byteorder:
        return None
    if isinstance(inner[1], BloscCodec):
        decoder = inner[1]._blosc_codec
    elif isinstance(inner[1], ZstdCodec):
        decoder = inner[1]._zstd_codec
    else:
        return None
    return _Layout(
        store=store,
        shard=int(shard_shape[0]),
        inner=int(inner_shape[0]),
        chunks_per_shard=(shard_shape[0] // inner_shape[0],) + (1,) * (array.ndim - 1),
        codec=sc,
        decoder=decoder,
        checksum=checksum,
    )


def read_pairs(array, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` (pairs) of a zarr array, equal to ``array[start:stop]``.

    Parameters
    ----------
    array
        A ``zarr.Array`` (e.g. a cube's ``host``, ``arc``, ``invvar`` or ``maskbits``).
    start, stop
        Pair range. When it is whole shards (``start`` on a shard boundary, ``stop`` on one or at
        the array's end) and the array's layout allows (:func:`_layout`), each inner chunk is
        decompressed straight into the result; otherwise zarr reads it.

    Returns
    -------
    numpy.ndarray
        ``(stop - start, ...)`` of the array's dtype. A damaged inner chunk raises ``ValueError``
        (its checksum), as zarr's read does.
    """
    n = int(array.shape[0])
    start, stop = max(int(start), 0), min(int(stop), n)
    lay = _layout(array) if stop > start else None
    if lay is None or start % lay.shard or (stop % lay.shard and stop != n):
        return np.asarray(array[start:stop])
    out = np.empty((stop - start, *array.shape[1:]), np.dtype(array.dtype))
    for s0 in range(start, stop, lay.shard):
        _read_shard(array, lay, s0 // lay.shard, out[s0 - start : min(s0 + lay.shard, stop) - start])
    return out


def _read_shard(array, lay: _Layout, index: int, dest: np.ndarray) -> None:
    """Decode shard ``index`` of ``array`` into ``dest`` (its first ``len(dest)`` pairs)."""
    from zarr.core.buffer import default_buffer_prototype

    key = array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))
    path = f"{array.store_path.path}/{key}" if array.store_path.path else key
    fill = array.metadata.fill_value
    raw = lay.store.get_sync(path, prototype=default_buffer_prototype())
    if raw is None:  # a shard never written reads as the fill value, as zarr reads it
        dest[...] = fill
        return
    offsets = lay.codec._shard_reader_from_bytes_sync(raw, lay.chunks_per_shard).index.offsets_and_lengths
    offsets = offsets.reshape(-1, 2)
    data = raw.as_numpy_array().view(np.uint8)
    for k in range(lay.chunks_per_shard[0]):
        a = k * lay.inner
        if a >= len(dest):
            break
        rows = dest[a : a + lay.inner]
        off, length = (int(v) for v in offsets[k])
        if off == _EMPTY:
            rows[...] = fill
            continue
        payload = data[off : off + length]
        if lay.checksum:
            payload, stored = payload[:-4], payload[-4:]
            if np.uint32(google_crc32c.value(payload)).tobytes() != bytes(stored):
                raise ValueError(
                    f"{path}: inner chunk {k}: stored and computed crc32c checksums do not match (damaged shard)"
                )
        if len(rows) == lay.inner:
            lay.decoder.decode(payload, out=rows.reshape(-1).view(np.uint8))
        else:  # the array ends inside this inner chunk: zarr stored it whole (fill beyond the end)
            whole = np.empty((lay.inner, *rows.shape[1:]), rows.dtype)
            lay.decoder.decode(payload, out=whole.reshape(-1).view(np.uint8))
            rows[...] = whole[: len(rows)]


def zarr_array_of(data) -> Any | None:
    """The ``zarr.Array`` under a plain chunked read of one stored variable (``data`` a dask array
    as :func:`xarray.open_zarr` makes it), or ``None``: only when xarray's adapters between them
    merely index it (no decoding of values), so its rows are the variable's values."""
    from xarray.backends.zarr import ZarrArrayWrapper
    from xarray.core.indexing import (
        BasicIndexer,
        CopyOnWriteArray,
        ImplicitToExplicitIndexingAdapter,
        LazilyIndexedArray,
    )

    from .diagnostics._compute import store_source

    obj = store_source(data)
    if not isinstance(obj, ImplicitToExplicitIndexingAdapter):
        return None
    obj = obj.array
    if isinstance(obj, CopyOnWriteArray):
        obj = obj.array
    if not isinstance(obj, LazilyIndexedArray):
        return None
    key = obj.key
    if not isinstance(key, BasicIndexer) or any(k != slice(None) for k in key.tuple):
        return None
    obj = obj.array
    if not isinstance(obj, ZarrArrayWrapper):
        return None
    arr = obj.get_array()
    if tuple(arr.shape) != tuple(data.shape) or np.dtype(arr.dtype) != data.dtype:
        return None
    return arr
