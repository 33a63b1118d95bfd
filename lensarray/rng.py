"""Per-pair random numbers: the reason a cube is bit-identical for any chunking or cluster.

Two kinds of draws, both pure functions of ``(root_seed, pair id, stream)``:

- :func:`pair_uniforms`, the fixed-size uniforms that every prior transforms (host facts,
  lens, source, brightness, negative kinds). They are drawn in fixed *random blocks* of
  :data:`RNG_BLOCK` consecutive pair ids: block ``b`` of ``stream`` is one generator seeded with
  ``SeedSequence(root_seed, spawn_key=(tag, stream, attempt, b))`` and uniform ``j`` of pair
  ``p`` is element ``(j, p % RNG_BLOCK)`` of its ``(k, RNG_BLOCK)`` draw. The block layout is a
  constant of this module, never of a chunking, so a pair's numbers do not depend on which
  pairs share its chunk, and a million pairs are drawn from ~250 generators instead of a
  million (planning cost: creating one numpy Generator per pair dominated it). Column-major
  blocks keep the first ``k`` columns unchanged when a caller asks for more.
- :func:`pair_rng`, a generator of one pair and stream, for draws of variable length at render
  time (pixel noise, mask features, hard-negative geometry), whose cost the pixels dominate.

``stream`` separates independent uses (:class:`Stream`), so adding a use never shifts the
numbers of another; the two kinds are keyed differently, so they never share numbers.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = ["Stream", "RNG_BLOCK", "pair_rng", "pair_uniforms"]

#: Pairs per random block of :func:`pair_uniforms`. Part of the stream layout: changing it
#: changes every cube (as renumbering a :class:`Stream` would).
RNG_BLOCK = 4096

#: First spawn-key word of the block generators: keeps them apart from :func:`pair_rng`'s.
_BLOCK_TAG = 0x0B10C


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
    """Generator for one pair and one stream (PCG64 from ``SeedSequence([root_seed, pair_id, stream])``)."""
    return np.random.default_rng(np.random.SeedSequence([int(root_seed), int(pair_id), int(stream)]))


def _block_uniforms(root_seed: int, stream: int, attempt: int, block: int, k: int) -> np.ndarray:
    """``(k, RNG_BLOCK)`` uniforms of one random block."""
    ss = np.random.SeedSequence(int(root_seed), spawn_key=(_BLOCK_TAG, int(stream), int(attempt), int(block)))
    return np.random.Generator(np.random.PCG64(ss)).random((k, RNG_BLOCK))


def pair_uniforms(root_seed: int, pair_ids: np.ndarray, stream: int, k: int, *, attempt: int = 0) -> np.ndarray:
    """``(n, k)`` uniforms in [0, 1), row ``i`` being pair ``pair_ids[i]``'s own numbers of ``stream``.

    Priors are vectorised transforms (inverse CDFs) of these columns. Row ``i`` depends only on
    ``(root_seed, pair_ids[i], stream, attempt)`` and its first ``k`` columns do not depend on
    ``k`` (see the module docstring for the block layout).

    Parameters
    ----------
    root_seed
        ``run.seed``.
    pair_ids
        Pair ids (>= 0), any order, repeats allowed.
    stream
        A :class:`Stream` (or another non-negative int for a further independent use).
    k
        Uniforms per pair.
    attempt
        0 for the pair's first draw; ``a > 0`` for its a-th independent re-draw.
    """
    ids = np.asarray(pair_ids, dtype=np.int64).ravel()
    out = np.empty((ids.size, k), dtype=np.float64)
    if ids.size == 0:
        return out
    if ids.min() < 0:
        raise ValueError(f"pair id {int(ids.min())}: allowed >= 0")
    blocks = ids // RNG_BLOCK
    order = None if (np.diff(blocks) >= 0).all() else np.argsort(blocks, kind="stable")
    sorted_blocks = blocks if order is None else blocks[order]
    starts = np.flatnonzero(np.r_[True, sorted_blocks[1:] != sorted_blocks[:-1]])
    stops = np.r_[starts[1:], ids.size]
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        rows = slice(a, b) if order is None else order[a:b]
        u = _block_uniforms(root_seed, stream, attempt, int(sorted_blocks[a]), k)
        offs = ids[rows] % RNG_BLOCK
        if b - a > 1 and offs[-1] - offs[0] == b - a - 1 and (np.diff(offs) == 1).all():
            out[rows] = u[:, offs[0] : offs[-1] + 1].T  # a run of consecutive ids: no gather
        else:
            out[rows] = u[:, offs].T
    return out
