"""PyTorch datasets with a real torch: picklable, every stamp once per epoch under ``spawn`` and
``fork`` with 2 workers, rank/world-size sharding (explicit and from a real gloo process group),
and the map-style dataset under ``DistributedSampler``.

torch is part of the test extra, so these tests run (never skip) in CI.
"""

import pickle

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.distributed import DistributedSampler

from lensarray.torch import LensArrayIterable, LensArrayPairs, consumer_shards

N_PAIRS, N_SHARDS = 32, 4  # the session's ``small_cube``: 4 shards of 8 pairs


def _stored(url):
    g = zarr.open_group(url, mode="r")
    return (
        np.asarray(g["host"][:]),
        np.asarray(g["arc"][:]),
        np.asarray(g["split"][:]),
        np.asarray(g["hard_negative"][:]),
    )


def _pairs(loader) -> list[int]:
    return sorted(torch.cat([b["pair"] for b in loader]).tolist())


def test_datasets_are_module_level_picklable_torch_datasets(small_cube):
    it = LensArrayIterable(small_cube, None, batch_size=8, augment=())
    back = pickle.loads(pickle.dumps(it))
    assert isinstance(back, IterableDataset) and type(back) is LensArrayIterable
    pairs = LensArrayPairs(small_cube, None)
    _ = pairs[0]  # opens the store in this process ...
    again = pickle.loads(pickle.dumps(pairs))  # ... which must not travel with the pickle
    assert isinstance(again, Dataset) and again._group is None and len(again) == N_PAIRS


def _check_epoch(url, batches_seen):
    host, arc, _, neg = _stored(url)
    assert sorted(torch.cat([b["pair"] for b in batches_seen]).tolist()) == sorted(list(range(N_PAIRS)) * 2)
    for b in batches_seen:  # stamps, labels and roles are the stored ones
        p, role = b["pair"].numpy(), b["role"].numpy()
        want = np.where(role[:, None, None, None] == 1, host[p] + arc[p], host[p])
        np.testing.assert_allclose(b["images"].numpy(), want, rtol=1e-6)
        np.testing.assert_array_equal(b["labels"].numpy(), (role == 1) & (neg[p] == 0))
        assert b["images"].dtype == torch.float32 and b["labels"].dtype == torch.int64


@pytest.mark.slow
def test_every_stamp_once_per_epoch_with_two_spawned_workers(small_cube):
    ds = LensArrayIterable(small_cube, None, batch_size=8, augment=(), shuffle_buffer=16)
    _check_epoch(small_cube, list(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn")))


# Forking is safe when the process that forks has not opened the store (the dataset opens it in
# each worker). A pytest worker has run other tests' threads (dask, zarr, moto), whose locks a
# forked child can inherit held, so the fork cases run in a fresh interpreter, as a training
# script would.
_FORK_SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import torch
from torch.utils.data import DataLoader
from lensarray.torch import LensArrayIterable
url = sys.argv[1]
out = {"epoch": [], "ranks": []}
ds = LensArrayIterable(url, None, batch_size=8, augment=(), shuffle_buffer=16)
for b in DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork"):
    out["epoch"].append({k: b[k].tolist() for k in ("pair", "role", "labels")})
for rank in range(2):
    ds = LensArrayIterable(url, None, batch_size=4, augment=(), rank=rank, world_size=2)
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")
    out["ranks"].append(sorted(torch.cat([b["pair"] for b in loader]).tolist()))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def forked(small_cube):
    import json
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, small_cube], capture_output=True, text=True, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_every_stamp_once_per_epoch_with_two_forked_workers(small_cube, forked):
    host, arc, _, neg = _stored(small_cube)
    pairs = [p for b in forked["epoch"] for p in b["pair"]]
    assert sorted(pairs) == sorted(list(range(N_PAIRS)) * 2)
    for b in forked["epoch"]:
        p, role = np.asarray(b["pair"]), np.asarray(b["role"])
        np.testing.assert_array_equal(b["labels"], (role == 1) & (neg[p] == 0))


def test_ranks_and_workers_partition_the_shards(forked):
    seen = forked["ranks"]
    assert not set(seen[0]) & set(seen[1])  # ranks share no pair
    assert sorted(seen[0] + seen[1]) == sorted(list(range(N_PAIRS)) * 2)
    # 2 ranks x 2 workers = 4 consumers of 4 shards: one whole shard each
    for r in range(2):
        for w in range(2):
            assert consumer_shards(N_SHARDS, r, 2, w, 2) == [r * 2 + w]
    assert sorted(seen[0]) == sorted([p for s in (0, 1) for p in range(8 * s, 8 * s + 8)] * 2)


def test_consumer_shards_cover_every_shard_exactly_once():
    for n_shards in (1, 5, 17):
        for world in (1, 2, 3):
            for workers in (1, 2, 4):
                got = [
                    s
                    for r in range(world)
                    for w in range(workers)
                    for s in consumer_shards(n_shards, r, world, w, workers)
                ]
                assert sorted(got) == list(range(n_shards))


def _rank_main(rank: int, world: int, init: str, url: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        ds = LensArrayIterable(url, None, batch_size=4, augment=())  # rank/world from the group
        pairs = torch.cat([b["pair"] for b in DataLoader(ds, batch_size=None, num_workers=0)])
        np.save(f"{out}/rank{rank}.npy", pairs.numpy())
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_rank_comes_from_a_real_process_group(small_cube, tmp_path):
    import torch.multiprocessing as mp

    init = f"file://{tmp_path}/rendezvous"
    mp.spawn(_rank_main, args=(2, init, small_cube, str(tmp_path)), nprocs=2, join=True)
    got = [np.load(tmp_path / f"rank{r}.npy").tolist() for r in range(2)]
    assert sorted(got[0]) == sorted([p for s in (0, 2) for p in range(8 * s, 8 * s + 8)] * 2)
    assert sorted(got[1]) == sorted([p for s in (1, 3) for p in range(8 * s, 8 * s + 8)] * 2)


@pytest.mark.slow
def test_map_style_pairs_under_distributed_sampler(small_cube):
    host, arc, split, neg = _stored(small_cube)
    train = np.flatnonzero(split == 0)
    assert 0 < train.size < N_PAIRS
    seen = []
    for rank in range(2):
        ds = LensArrayPairs(small_cube, "train")
        assert len(ds) == train.size
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=2, multiprocessing_context="spawn")
        for b in loader:
            p = b["pair"].numpy()
            np.testing.assert_allclose(b["lens"].numpy(), host[p] + arc[p], rtol=1e-6)
            np.testing.assert_array_equal(b["control"].numpy(), host[p])
            np.testing.assert_array_equal(b["label"].numpy(), neg[p] == 0)
            seen.extend(p.tolist())
    # DistributedSampler pads to a multiple of the replicas: every train pair, at most one repeat
    assert set(seen) == set(train.tolist()) and len(seen) - train.size in (0, 1)


def test_bad_arguments_are_refused(small_cube):
    with pytest.raises(TypeError, match="url"):
        LensArrayIterable(object())
    with pytest.raises(ValueError, match="split"):
        LensArrayPairs(small_cube, "training")
    with pytest.raises(ValueError, match="rank"):
        list(LensArrayIterable(small_cube, None, rank=2, world_size=2))
    with pytest.raises(IndexError):
        LensArrayPairs(small_cube, None)[N_PAIRS]
