"""Exact order statistics of small float64 buffers inside numba kernels (the pixel pass and the
visibility proxy): the linear-interpolation quantile of two exact order statistics.

``numpy.partition`` inside numba copies its input and runs a general introselect: ~21 us for the
4,096 invvar values of one 64x64 band, a third of the pixel pass's table kernel. Here a
deterministic sample of the buffer brackets the wanted rank, one pass counts the values below the
bracket and gathers the few inside it, and an in-place quickselect finishes on those (~6 us);
when the bracket misses (rare, and for short buffers) the quickselect runs on the whole buffer.
Either way the two order statistics are exact; the quantile interpolates them as
``vlo + t * (vhi - vlo)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["select_quantile"]

#: Below this many values the bracketing pass does not pay: plain quickselect.
_DIRECT = 256
#: Values in the bracketing sample, and the half-width of the bracket in sample ranks (a sample
#: rank has a standard deviation <= sqrt(64) / 2 = 4: +-10 misses ~1 % of the time).
_SAMPLE = 64
_HALF = 10


@njit(cache=True)
def _quickselect(a, n, k):
    """k-th smallest (0-based) of ``a[:n]``, partitioning ``a[:n]`` in place around it: afterwards
    ``a[:k] <= a[k] <= a[k+1:n]``. Hoare partition with a median-of-three pivot (equal values
    split evenly, so runs of ties stay linear)."""
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
        if x > y:
            y = x
        pivot = y
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:  # a[j+1:i] all equal the pivot and k is among them
            return a[k]
    return a[k]


@njit(cache=True)
def _min_from(a, start, n):
    v = a[start]
    for t in range(start + 1, n):
        if a[t] < v:
            v = a[t]
    return v


@njit(cache=True)
def _kth_pair(buf, m, k, scratch):
    """``(k-th, (k+1)-th)`` smallest of the finite values ``buf[:m]`` (0-based; the second equals
    the first when ``k == m - 1``). ``buf`` is reordered; ``scratch`` holds at least ``m + 1`` values."""
    if m <= _DIRECT:
        v = _quickselect(buf, m, k)
        return v, (_min_from(buf, k + 1, m) if k + 1 < m else v)
    stride = m // _SAMPLE
    sample = np.empty(_SAMPLE)
    for j in range(_SAMPLE):
        sample[j] = buf[j * stride + stride // 2]
    sample.sort()
    r = (k * _SAMPLE) // m
    lo_v = sample[r - _HALF] if r - _HALF >= 0 else -np.inf
    hi_v = sample[r + _HALF] if r + _HALF < _SAMPLE else np.inf
    below = 0
    inside = 0
    above_min = np.inf
    for t in range(m):
        # branch-free: on noisy pixels a branch here is mispredicted a third of the time
        v = buf[t]
        scratch[inside] = v
        below += v < lo_v
        inside += (v >= lo_v) & (v <= hi_v)
        above_min = min(above_min, v if v > hi_v else np.inf)
    kk = k - below
    if 0 <= kk < inside:
        v = _quickselect(scratch, inside, kk)
        if k + 1 >= m:
            return v, v
        return v, (_min_from(scratch, kk + 1, inside) if kk + 1 < inside else above_min)
    v = _quickselect(buf, m, k)  # the bracket missed the rank: select over everything
    return v, (_min_from(buf, k + 1, m) if k + 1 < m else v)


@njit(cache=True)
def select_quantile(buf, m, q, scratch):
    """The linear-interpolation ``q`` quantile of the finite values ``buf[:m]`` (numpy's default rule),
    NaN when ``m == 0``; reorders ``buf``; ``scratch`` holds at least ``m + 1`` values."""
    if m == 0:
        return np.nan
    pos = q * (m - 1)
    lo = int(math.floor(pos))
    vlo, vhi = _kth_pair(buf, m, lo, scratch)
    return vlo + (pos - lo) * (vhi - vlo)
