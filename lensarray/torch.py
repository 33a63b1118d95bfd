"""PyTorch datasets over a lensarray cube (optional: needs ``torch``, ``pip install 'lensarray[torch]'``).

Two datasets, both defined at module level so that ``DataLoader`` can pickle them under every
start method (``spawn`` is the macOS default and Linux's from Python 3.14):

- :class:`LensArrayIterable`: an ``IterableDataset`` of shuffled batches from
  :func:`lensarray.training.batches` (bounded memory, one shard read at a time); use it with
  ``DataLoader(ds, batch_size=None)``.
- :class:`LensArrayPairs`: a map-style ``Dataset`` with one item per pair (lens and control stamp),
  for samplers such as ``DistributedSampler``.

Each process opens the store itself, lazily on first use: zarr v3 and s3fs run an event loop on a
thread, which does not survive ``fork``, so an opened store is never pickled or shared.

Sharding. :class:`LensArrayIterable` gives every consumer -- the DataLoader worker ``w`` of
``num_workers`` on distributed rank ``r`` of ``world_size`` -- the Zarr shards
``r * num_workers + w, ... step world_size * num_workers``, so each stamp is seen exactly once per
epoch over all ranks and workers. ``rank`` and ``world_size`` are taken from the arguments, else
from an initialised :mod:`torch.distributed` process group, else ``0`` and ``1``. Ranks can hold
different numbers of stamps (shards are whole): when DDP needs equal step counts, use
:class:`LensArrayPairs` with ``DistributedSampler(drop_last=True)``, or stop every rank after the
smallest count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .storage import int_attr, zarr_array

if TYPE_CHECKING:
    import zarr

try:
    import torch
    from torch.utils.data import Dataset, IterableDataset, get_worker_info
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("lensarray.torch needs PyTorch: pip install 'lensarray[torch]'") from exc

__all__ = ["LensArrayIterable", "LensArrayPairs", "consumer_shards", "distributed_rank"]


def distributed_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the explicit values, else the initialised process group's, else (0, 1)."""
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
    rank = 0 if rank is None else int(rank)
    world_size = 1 if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank = {rank}, world_size = {world_size}: allowed 0 <= rank < world_size, world_size >= 1")
    return rank, world_size


def consumer_shards(n_shards: int, rank: int, world_size: int, worker: int, num_workers: int) -> list[int]:
    """Shard indices read by DataLoader worker ``worker`` of ``num_workers`` on rank ``rank``.

    Every shard index in ``0 .. n_shards - 1`` belongs to exactly one (rank, worker).
    """
    consumer = rank * num_workers + worker
    return list(range(consumer, n_shards, world_size * num_workers))


def _tensor_dict(batch: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "images": torch.from_numpy(batch["images"]),
        "labels": torch.from_numpy(batch["labels"].astype(np.int64)),
        "pair": torch.from_numpy(np.asarray(batch["pair"], dtype=np.int64)),
        "role": torch.from_numpy(np.asarray(batch["role"], dtype=np.int8)),
    }
    out["metadata"] = {
        k: torch.from_numpy(np.asarray(v, dtype=np.float32)) if v.dtype.kind in "fiu" else v
        for k, v in batch["metadata"].items()
    }
    return out


class LensArrayIterable(IterableDataset):
    """Shuffled batches of lens/control stamps; use with ``DataLoader(ds, batch_size=None)``.

    Parameters
    ----------
    url
        Cube location (local path or ``s3://`` URL; not an opened dataset: every worker opens
        its own store).
    split
        ``"train"``, ``"val"``, ``"test"`` or ``None`` for every pair.
    batch_size
        Stamps per batch (a pair gives two stamps).
    seed
        Root seed; the shard order, shuffling and augmentations of a consumer derive from
        ``(seed, epoch, consumer index)``.
    shuffle_buffer, augment, centre_mask, drop_last
        As for :func:`lensarray.training.batches`.
    storage_options
        fsspec options (endpoint, credentials) for remote stores.
    rank, world_size
        This process's place in a distributed job; ``None`` asks :mod:`torch.distributed`.

    Yields
    ------
    dict
        ``images`` float32 tensor (b, band, y, x) in nanomaggy, ``labels`` int64 (1 lens stamp of a
        real injection, else 0), ``pair`` int64, ``role`` int8 (1 lens stamp, 0 control stamp),
        ``metadata`` dict of float32 tensors (per-pair variables, see
        :data:`lensarray.training.METADATA_VARS`).
    """

    def __init__(
        self,
        url: str,
        split: str | None = "train",
        *,
        batch_size: int = 64,
        seed: int = 0,
        shuffle_buffer: int = 2048,
        augment: tuple[str, ...] = ("flip", "rot90"),
        centre_mask: dict | None = None,
        storage_options: dict | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(url, str):
            raise TypeError("url: allowed a string location (each worker opens the store itself)")
        self.url, self.split, self.batch_size, self.seed = url, split, int(batch_size), int(seed)
        self.shuffle_buffer, self.augment, self.centre_mask = int(shuffle_buffer), tuple(augment), centre_mask
        self.storage_options, self.drop_last = storage_options, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (re-seeds the shard order and shuffling, as ``DistributedSampler`` does)."""
        self.epoch = int(epoch)

    def _n_shards(self) -> int:
        from .store import open_group

        group = open_group(self.url, self.storage_options, mode="r")
        n = int(zarr_array(group, "host").shape[0])
        shard = int_attr(group, "shard_pairs", n)
        return -(-n // shard)

    def shards(self, worker: int = 0, num_workers: int = 1) -> list[int]:
        """The shard indices this rank's DataLoader worker ``worker`` reads."""
        rank, world = distributed_rank(self.rank, self.world_size)
        return consumer_shards(self._n_shards(), rank, world, worker, num_workers)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from .training import batches

        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        rank, world = distributed_rank(self.rank, self.world_size)
        mine = consumer_shards(self._n_shards(), rank, world, worker, num_workers)
        consumer = rank * num_workers + worker
        if not mine:
            return
        for b in batches(
            self.url,
            self.split,
            batch_size=self.batch_size,
            seed=self.seed * 1009 + consumer,
            epoch=self.epoch,
            shuffle_buffer=self.shuffle_buffer,
            augment=self.augment,
            centre_mask=self.centre_mask,
            storage_options=self.storage_options,
            shards=mine,
            drop_last=self.drop_last,
        ):
            yield _tensor_dict(b)


class LensArrayPairs(Dataset):
    """Map-style dataset: item ``i`` is the ``i``-th pair of the split (lens and control stamp).

    Use with any sampler (``DistributedSampler`` for DDP). Every item reads its pair from the Zarr
    arrays (one inner chunk decoded per item), so random access costs ``chunk_pairs`` times the
    decoding of a sequential read: prefer :class:`LensArrayIterable` for full-epoch training.

    Parameters
    ----------
    url
        Cube location (opened lazily in each process).
    split
        ``"train"``, ``"val"``, ``"test"`` or ``None`` for every pair.
    storage_options
        fsspec options for remote stores.

    Items
    -----
    dict
        ``lens`` and ``control`` float32 tensors (band, y, x) in nanomaggy (lens = host + arc),
        ``label`` int64 of the lens stamp (0 for a hard negative), ``pair`` int64 id.
    """

    def __init__(self, url: str, split: str | None = "train", *, storage_options: dict | None = None) -> None:
        from .cube import SPLIT_NAMES
        from .store import open_group

        if not isinstance(url, str):
            raise TypeError("url: allowed a string location (each worker opens the store itself)")
        if split is not None and split not in SPLIT_NAMES:
            raise ValueError(f"split = {split!r}: allowed one of {', '.join(SPLIT_NAMES)} or None")
        self.url, self.split, self.storage_options = url, split, storage_options
        group = open_group(url, storage_options, mode="r")
        codes = np.asarray(zarr_array(group, "split")[:])
        self.pairs = (
            np.arange(codes.size, dtype=np.int64)
            if split is None
            else np.flatnonzero(codes == SPLIT_NAMES.index(split)).astype(np.int64)
        )
        self.hard_negative = np.asarray(zarr_array(group, "hard_negative")[:])[self.pairs]
        self._group: zarr.Group | None = None  # opened on first access in the process that reads

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_group"] = None  # an opened store never crosses a process boundary
        return state

    def __len__(self) -> int:
        return int(self.pairs.size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index}: allowed 0 <= index < {len(self)}")
        if self._group is None:
            from .store import open_group

            self._group = open_group(self.url, self.storage_options, mode="r")
        p = int(self.pairs[index])
        host = np.asarray(zarr_array(self._group, "host")[p], dtype=np.float32)
        arc = np.asarray(zarr_array(self._group, "arc")[p], dtype=np.float32)
        return {
            "lens": torch.from_numpy(host + arc),
            "control": torch.from_numpy(host),
            "label": torch.tensor(int(self.hard_negative[index] == 0), dtype=torch.int64),
            "pair": torch.tensor(p, dtype=torch.int64),
        }
