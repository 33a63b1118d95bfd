"""numpy's per-stamp random streams, replicated in numba: ``Generator(PCG64(SeedSequence(entropy)))``
followed by ``uniform`` and ``integers`` draws, bit for bit.

The centre-masked ablation (:func:`lensarray.diagnostics.ablation.centre_mask`) gives every stamp
its own stream ``SeedSequence([seed, sample_id])``, so that a masked stamp does not depend on its
batch. Creating one numpy Generator per stamp and drawing from it costs ~15 us in Python object
work, more than the masking itself and 13 % of a diagnose worker's time. The same numbers come
from a few hundred integer operations: numpy's SeedSequence hash (``mix_entropy`` and
``generate_state``), PCG64's 128-bit LCG with the XSL-RR output (``pcg64_set_seed``,
``pcg64_next64`` / ``next32`` with its 32-bit buffer), ``random_uniform`` (53-bit doubles) and
``random_bounded_uint64_fill`` for ranges below 2^32 (Lemire's rejection on 32-bit draws). The
algorithms are numpy's (numpy/random/bit_generator.pyx, src/pcg64, src/distributions); tests
compare every draw with numpy's own generators.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint32, uint64

__all__ = ["entropy_words", "stamp_states", "next_double", "bounded_uint32"]

_M32 = uint64(0xFFFFFFFF)
# SeedSequence constants (numpy/random/bit_generator.pyx)
_INIT_A = uint32(0x43B0D7E5)
_MULT_A = uint32(0x931E8875)
_INIT_B = uint32(0x8B51F9DD)
_MULT_B = uint32(0x58F38DED)
_MIX_MULT_L = uint32(0xCA01F9DD)
_MIX_MULT_R = uint32(0x4973F715)
_POOL = 4
# PCG64's default 128-bit multiplier
_MUL_HI = uint64(2549297995355413924)
_MUL_LO = uint64(4865540595714422341)


def entropy_words(value: int) -> np.ndarray:
    """The uint32 words numpy's SeedSequence makes of one non-negative int (``0`` -> ``[0]``;
    little-endian 32-bit words otherwise)."""
    n = int(value)
    if n < 0:
        raise ValueError(f"seed = {value!r}: allowed an integer >= 0")
    words = [0] if n == 0 else []
    while n > 0:
        words.append(n & 0xFFFFFFFF)
        n >>= 32
    return np.array(words, np.uint32)


@njit(cache=True)
def _hashmix(value, hc):
    value = uint32(value ^ hc[0])
    hc[0] = uint32(hc[0] * _MULT_A)
    value = uint32(value * hc[0])
    return uint32(value ^ (value >> uint32(16)))


@njit(cache=True)
def _mix(x, y):
    r = uint32(uint32(_MIX_MULT_L * x) - uint32(_MIX_MULT_R * y))
    return uint32(r ^ (r >> uint32(16)))


@njit(cache=True)
def _mulhi64(x, y):
    x0, x1 = x & _M32, x >> uint64(32)
    y0, y1 = y & _M32, y >> uint64(32)
    p00, p01, p10, p11 = x0 * y0, x0 * y1, x1 * y0, x1 * y1
    mid = (p00 >> uint64(32)) + (p01 & _M32) + (p10 & _M32)
    return p11 + (p01 >> uint64(32)) + (p10 >> uint64(32)) + (mid >> uint64(32))


@njit(cache=True)
def _step(st):
    """``state = state * MULT + inc`` (mod 2^128); ``st`` = [state_hi, state_lo, inc_hi, inc_lo]."""
    hi, lo = st[0], st[1]
    new_lo = lo * _MUL_LO
    new_hi = _mulhi64(lo, _MUL_LO) + hi * _MUL_LO + lo * _MUL_HI
    s_lo = new_lo + st[3]
    carry = uint64(1) if s_lo < new_lo else uint64(0)
    st[0] = new_hi + st[2] + carry
    st[1] = s_lo


@njit(cache=True)
def _next64(st):
    _step(st)
    v = st[0] ^ st[1]
    rot = st[0] >> uint64(58)
    return (v >> rot) | (v << ((uint64(64) - rot) & uint64(63)))


@njit(cache=True)
def next_double(st):
    """``random_uniform``'s unit draw: (next64 >> 11) / 2^53."""
    return np.float64(_next64(st) >> uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _next32(st):
    # PCG64's 32-bit draws take both halves of one 64-bit output, low half first
    if st[4] != 0:
        st[4] = uint64(0)
        return uint32(st[5])
    v = _next64(st)
    st[4] = uint64(1)
    st[5] = v >> uint64(32)
    return uint32(v & _M32)


@njit(cache=True)
def bounded_uint32(st, rng):
    """One ``integers(0, rng + 1)`` draw for ``0 < rng < 2^32 - 1`` (Lemire's method, as
    numpy's ``buffered_bounded_lemire_uint32``)."""
    rng_excl = uint64(rng) + uint64(1)
    m = uint64(_next32(st)) * rng_excl
    leftover = m & _M32
    if leftover < rng_excl:
        threshold = (uint64(0xFFFFFFFF) - uint64(rng)) % rng_excl
        while leftover < threshold:
            m = uint64(_next32(st)) * rng_excl
            leftover = m & _M32
    return m >> uint64(32)


@njit(cache=True)
def _seed_state(words, st):
    """PCG64 state of ``Generator(PCG64(SeedSequence(words)))`` into ``st`` (6 uint64:
    state hi/lo, increment hi/lo, has-32-bit flag, the buffered 32 bits)."""
    pool = np.empty(_POOL, np.uint32)
    hc = np.empty(1, np.uint32)
    hc[0] = _INIT_A
    for i in range(_POOL):
        pool[i] = _hashmix(words[i] if i < words.size else uint32(0), hc)
    for i_src in range(_POOL):
        for i_dst in range(_POOL):
            if i_src != i_dst:
                pool[i_dst] = _mix(pool[i_dst], _hashmix(pool[i_src], hc))
    for i_src in range(_POOL, words.size):
        for i_dst in range(_POOL):
            pool[i_dst] = _mix(pool[i_dst], _hashmix(words[i_src], hc))
    # generate_state(4, uint64): 8 words, little-endian pairs
    out = np.empty(8, np.uint32)
    h = _INIT_B
    for i in range(8):
        v = uint32(pool[i % _POOL] ^ h)
        h = uint32(h * _MULT_B)
        v = uint32(v * h)
        out[i] = uint32(v ^ (v >> uint32(16)))
    seed_hi = uint64(out[0]) | (uint64(out[1]) << uint64(32))
    seed_lo = uint64(out[2]) | (uint64(out[3]) << uint64(32))
    inc_hi = uint64(out[4]) | (uint64(out[5]) << uint64(32))
    inc_lo = uint64(out[6]) | (uint64(out[7]) << uint64(32))
    # pcg64_srandom_r: inc = (initseq << 1) | 1; state = 0; step; state += initstate; step
    st[2] = (inc_hi << uint64(1)) | (inc_lo >> uint64(63))
    st[3] = (inc_lo << uint64(1)) | uint64(1)
    st[0] = uint64(0)
    st[1] = uint64(0)
    _step(st)
    lo = st[1] + seed_lo
    carry = uint64(1) if lo < st[1] else uint64(0)
    st[0] = st[0] + seed_hi + carry
    st[1] = lo
    _step(st)
    st[4] = uint64(0)
    st[5] = uint64(0)


@njit(cache=True)
def _stamp_states(prefix, ids, out):
    words = np.empty(prefix.size + 2, np.uint32)
    words[: prefix.size] = prefix
    for i in range(ids.size):
        v = ids[i]
        nw = prefix.size
        words[nw] = uint32(v & _M32)
        nw += 1
        if v > _M32:
            words[nw] = uint32(v >> uint64(32))
            nw += 1
        _seed_state(words[:nw], out[i])


def stamp_states(seed: int, ids: np.ndarray) -> np.ndarray:
    """PCG64 states ``(n, 6)`` uint64 of ``Generator(PCG64(SeedSequence([seed, id])))`` for every
    id (``0 <= id < 2^64``), ready for :func:`next_double` and :func:`bounded_uint32`."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0):
        raise ValueError("sample_ids: allowed integers >= 0")
    out = np.empty((ids.size, 6), np.uint64)
    _stamp_states(entropy_words(seed), np.ascontiguousarray(ids, np.uint64).ravel(), out)
    return out
