"""Training loader: labels, split filtering, determinism, shuffling across shards, bounded reads."""

import numpy as np
import pytest

from lensarray.diagnostics.toycube import toy_cube
from lensarray.training import batches


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    ds = toy_cube(96, kind="ring", size=32, seed=3, chunk_pairs=16)
    rng = np.random.default_rng(0)
    ds["split"] = ("pair", rng.choice(np.array([0, 0, 0, 1, 2], np.int8), 96))
    ds["hard_negative"] = ("pair", np.where(np.arange(96) % 10 == 0, 1, 0).astype(np.int8))
    ds.attrs["shard_pairs"] = 16
    return ds


def _epoch(cube, **kw):
    return list(batches(cube, batch_size=10, shuffle_buffer=24, **kw))


def test_labels_and_stamps_are_right(cube):
    out = _epoch(cube, split=None, augment=())
    pairs = np.concatenate([b["pair"] for b in out])
    roles = np.concatenate([b["role"] for b in out])
    labels = np.concatenate([b["labels"] for b in out])
    assert len(pairs) == 2 * 96 and len(set(zip(pairs.tolist(), roles.tolist(), strict=True))) == 192
    neg = cube["hard_negative"].values
    np.testing.assert_array_equal(labels, ((roles == 1) & (neg[pairs] == 0)).astype(np.int8))
    b = out[0]
    host, arc = cube["host"].values, cube["arc"].values
    for k in range(len(b["pair"])):
        want = host[b["pair"][k]] + (arc[b["pair"][k]] if b["role"][k] == 1 else 0)
        np.testing.assert_allclose(b["images"][k], want, rtol=1e-6)


def test_split_filter_and_metadata(cube):
    out = _epoch(cube, split="test")
    pairs = np.concatenate([b["pair"] for b in out])
    assert set(np.unique(cube["split"].values[pairs]).tolist()) == {2}
    assert "theta_e" in out[0]["metadata"] and len(out[0]["metadata"]["theta_e"]) == len(out[0]["pair"])


def test_deterministic_given_seed_and_epoch(cube):
    a = _epoch(cube, seed=5, epoch=1)
    b = _epoch(cube, seed=5, epoch=1)
    c = _epoch(cube, seed=5, epoch=2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["images"], y["images"])
    assert not np.array_equal(np.concatenate([x["pair"] for x in a]), np.concatenate([x["pair"] for x in c]))


def test_shuffles_across_shards(cube):
    first = _epoch(cube, split=None, seed=1)[0]["pair"]
    # the first batch mixes pairs from more than one 16-pair shard
    assert np.unique(first // 16).size > 1


def test_augmentations_preserve_flux(cube):
    plain = _epoch(cube, split=None, augment=(), seed=2)
    aug = _epoch(cube, split=None, augment=("flip", "rot90"), seed=2)
    tot = lambda bs: np.sort(np.concatenate([b["images"].sum(axis=(1, 2, 3), dtype=np.float64) for b in bs]))  # noqa: E731
    np.testing.assert_allclose(tot(plain), tot(aug), rtol=1e-5)


def test_centre_mask_transform_changes_only_the_core(cube):
    out = _epoch(cube, split=None, augment=(), centre_mask={"r_mask": 4.0}, seed=4)
    b = out[0]
    host, arc = cube["host"].values, cube["arc"].values
    yy, xx = np.mgrid[0:32, 0:32]
    outer = np.hypot(yy - 16, xx - 16) >= 4
    for k in range(3):
        want = host[b["pair"][k]] + (arc[b["pair"][k]] if b["role"][k] == 1 else 0)
        np.testing.assert_allclose(b["images"][k][:, outer], want[:, outer], rtol=1e-6)


def test_bad_arguments(cube):
    with pytest.raises(ValueError, match="split"):
        next(batches(cube, split="training"))
    with pytest.raises(ValueError, match="augment"):
        next(batches(cube, augment=("shear",)))
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(cube, batch_size=0))


def test_an_in_memory_cube_is_left_unchanged(cube):
    loaded = cube.copy(deep=True).load()  # numpy-backed: shard reads are views of the caller's arrays
    arc_before, host_before = loaded["arc"].values.copy(), loaded["host"].values.copy()
    out = _epoch(loaded, split=None, augment=())
    assert sum(len(b["pair"]) for b in out) == 2 * 96
    np.testing.assert_array_equal(loaded["arc"].values, arc_before)
    np.testing.assert_array_equal(loaded["host"].values, host_before)
