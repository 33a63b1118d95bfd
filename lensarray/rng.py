"""Per-pair random streams: the reason a cube is bit-identical for any chunking or cluster.

Every random number of pair ``p`` comes from a generator seeded with
``SeedSequence([root_seed, p, stream])``; ``stream`` separates independent uses (host
pixels, lens parameters, ...), so adding a new use never shifts the numbers of another.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = ["Stream", "pair_rng", "pair_uniforms"]


class Stream(IntEnum):
    """Independent random streams of one pair. Never renumber: that changes every cube."""

    HOST_PROPS = 0
    HOST_NOISE = 1
    HOST_MASK = 2
    LENS = 3
    SOURCE = 4
    BRIGHTNESS = 5
    NEGATIVE = 6
    SPLIT = 7
    HOST_PICK = 8
    AUGMENT = 9


def pair_rng(root_seed: int, pair_id: int, stream: int) -> np.random.Generator:
    """Generator for one pair and one stream (PCG64 from a SeedSequence)."""
    return np.random.default_rng(np.random.SeedSequence([int(root_seed), int(pair_id), int(stream)]))


def pair_uniforms(root_seed: int, pair_ids: np.ndarray, stream: int, k: int) -> np.ndarray:
    """``(n, k)`` uniforms in [0, 1), row ``i`` drawn from pair ``pair_ids[i]``'s own stream.

    Priors are then vectorised transforms (inverse CDFs) of these columns: the draw of one
    pair never depends on which other pairs share its chunk.
    """
    ids = np.asarray(pair_ids, dtype=np.int64).ravel()
    out = np.empty((ids.size, k), dtype=np.float64)
    for i, pid in enumerate(ids):
        out[i] = pair_rng(root_seed, pid, stream).random(k)
    return out
