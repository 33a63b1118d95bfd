"""PyTorch adapter for :func:`lensarray.training.batches` (optional: needs ``torch``).

Each DataLoader worker opens the store itself: zarr v3 and s3fs run an event loop on a thread,
which does not survive ``fork``, so an opened store must never be shared with workers. Shards are
split across workers so every stamp is seen once per epoch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LensArrayIterable"]


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("lensarray.torch needs PyTorch: pip install 'lensarray[torch]'") from None
    return torch


class LensArrayIterable:
    """An ``IterableDataset`` of batches; use with ``DataLoader(ds, batch_size=None)``.

    Parameters
    ----------
    url
        Cube location (a URL, not an opened dataset: each worker opens its own).
    split, batch_size, seed, shuffle_buffer, augment, centre_mask, storage_options
        As for :func:`lensarray.training.batches`.
    """

    def __new__(cls, *args, **kwargs):
        torch = _torch()
        base = torch.utils.data.IterableDataset

        class _Impl(base):
            def __init__(self, url: str, split: str | None = "train", *, batch_size: int = 64, seed: int = 0,
                         shuffle_buffer: int = 2048, augment=("flip", "rot90"), centre_mask: dict | None = None,
                         storage_options: dict | None = None):
                super().__init__()
                if not isinstance(url, str):
                    raise TypeError("url: allowed a string location (each worker opens the store itself)")
                self.url, self.split, self.batch_size, self.seed = url, split, batch_size, seed
                self.shuffle_buffer, self.augment, self.centre_mask = shuffle_buffer, tuple(augment), centre_mask
                self.storage_options = storage_options
                self.epoch = 0

            def set_epoch(self, epoch: int) -> None:
                self.epoch = int(epoch)

            def __iter__(self):
                from .cube import open_cube
                from .training import batches

                ds = open_cube(self.url, storage_options=self.storage_options)  # opened in this worker
                n = int(ds.sizes["pair"])
                shard = int(ds.attrs.get("shard_pairs", n))
                n_shards = -(-n // shard)
                info = torch.utils.data.get_worker_info()
                mine = list(range(n_shards)) if info is None else list(range(info.id, n_shards, info.num_workers))
                wid = 0 if info is None else info.id
                for b in batches(ds, self.split, batch_size=self.batch_size, seed=self.seed * 1009 + wid,
                                 epoch=self.epoch, shuffle_buffer=self.shuffle_buffer, augment=self.augment,
                                 centre_mask=self.centre_mask, shards=mine):
                    out: dict[str, Any] = {"images": torch.from_numpy(b["images"]),
                                           "labels": torch.from_numpy(b["labels"].astype("int64")),
                                           "pair": torch.from_numpy(b["pair"])}
                    out["metadata"] = {k: torch.from_numpy(v.astype("float32")) if v.dtype.kind in "fi" else v
                                       for k, v in b["metadata"].items()}
                    yield out

        return _Impl(*args, **kwargs)
