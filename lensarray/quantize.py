"""Quantisation of stored planes: optional lossy storage of noisy hosts, as astronomers store
noisy images (fpack's quantisation in units of the noise), and mantissa rounding.

Two operations, both per pair (so a cube is bit-identical for any chunking or worker count) and
both leaving float32 values with few significant bits, which byte/bit-shuffle + a fast
compressor then store in a fraction of the space:

- :func:`quantize_to_noise` (``host``): every pixel of a (pair, band) plane is rounded to a
  multiple of ``q = 2**floor(log2(step * sigma_min))``, ``sigma_min = 1/sqrt(max invvar)`` the
  smallest per-pixel noise sigma of that plane. A power-of-two step makes ``k * q`` exact in
  float32 and leaves ``log2|k|`` significant bits. **Bound**: ``|stored - exact| <= q/2 <=
  step/2 * sigma`` in every pixel with data (invvar > 0), i.e. <= 0.1 sigma for the largest
  allowed ``step`` (0.2). No dither is added: with ``q <= sigma/5`` the pixel noise itself dithers
  the quantiser, so the error is uniform on [-q/2, q/2] and uncorrelated with the signal (the
  characteristic function of the noise at 2 pi / q is exp(-2 pi^2 sigma^2 / q^2) < 1e-200;
  Widrow's quantisation theorem) — the rms error is q / sqrt(12) <= 0.058 sigma and its mean is
  0 to that precision. Planes without data (all invvar 0) are stored unchanged.
- :func:`round_mantissa` (``arc``, and the synthetic ``invvar`` at generation): round-to-nearest-
  even keeping ``keepbits`` of the 23 mantissa bits; relative error <= 2**-(keepbits + 1).

The rule and its bound are recorded in the cube attrs (``quantization``, JSON; "" when off) by
:func:`quantization_attrs`, and :func:`apply_quantization` applies exactly that record (the
store's shard writer and ``verify``'s re-render both call it).
"""

from __future__ import annotations

import json

import numpy as np
from numba import njit

__all__ = ["round_mantissa", "quantize_to_noise", "noise_step", "quantization_attrs", "apply_quantization"]


@njit(cache=True)
def _round_bits(bits, drop):  # pragma: no cover - compiled
    half = np.uint32((1 << (drop - 1)) - 1)
    keep = np.uint32(0xFFFFFFFF ^ ((1 << drop) - 1))
    for i in range(bits.size):
        b = bits[i]
        if (b & np.uint32(0x7F800000)) != np.uint32(0x7F800000):  # inf and NaN stay as they are
            bits[i] = (b + half + ((b >> np.uint32(drop)) & np.uint32(1))) & keep


def round_mantissa(values: np.ndarray, keepbits: int) -> np.ndarray:
    """float32 ``values`` rounded (to nearest, ties to even) to ``keepbits`` mantissa bits.

    Relative error <= 2**-(keepbits + 1) for normal floats (subnormals, |x| < 1.2e-38, carry fewer
    mantissa bits: their absolute error is < 2**(-149 + 23 - keepbits)); zeros, infinities and NaNs
    are kept. ``keepbits`` in
    [0, 23] (23: unchanged). Returns a new array (one compiled pass).
    """
    if not 0 <= int(keepbits) <= 23:
        raise ValueError(f"keepbits = {keepbits}: allowed range [0, 23]")
    out = np.array(values, dtype=np.float32, order="C", copy=True)
    drop = 23 - int(keepbits)
    if drop:
        _round_bits(out.reshape(-1).view(np.uint32), drop)
    return out


def noise_step(invvar: np.ndarray, step_sigma: float) -> np.ndarray:
    """Quantisation step per (pair, band) plane: ``2**floor(log2(step_sigma * sigma_min))``,
    ``sigma_min = 1/sqrt(max invvar)`` (image units); 0 for planes without data.

    ``invvar`` ``(..., y, x)``; returns the leading shape, float32.
    """
    iv = np.asarray(invvar)
    # the maximum in the stored precision, then float64: the same value (the conversion is exact
    # and monotonic) without a float64 copy of the whole plane
    peak = iv.reshape(*iv.shape[:-2], -1).max(axis=-1).astype(np.float64)
    with np.errstate(divide="ignore"):
        sigma_min = np.where(peak > 0, 1.0 / np.sqrt(np.where(peak > 0, peak, 1.0)), np.inf)
        q = np.where(np.isfinite(sigma_min), np.exp2(np.floor(np.log2(step_sigma * sigma_min))), 0.0)
    return q.astype(np.float32)


def quantize_to_noise(values: np.ndarray, invvar: np.ndarray, step_sigma: float) -> np.ndarray:
    """``values`` (..., y, x) rounded to multiples of :func:`noise_step` per plane (see the module
    docstring for the bound: ``|error| <= step_sigma / 2`` x the pixel's noise sigma)."""
    x = np.asarray(values, dtype=np.float32)
    q = noise_step(invvar, step_sigma)[..., None, None]
    safe = np.where(q > 0, q, np.float32(1.0))
    # q is a power of two: x / q and k * q are exact, so the only rounding is rint's
    out = np.divide(x, safe, dtype=np.float32)
    np.rint(out, out=out)
    out *= safe
    np.copyto(out, x, where=~(q > 0))  # planes without data are stored unchanged
    return out


def quantization_attrs(cfg) -> str:
    """JSON record of the configured quantisation (``""`` when every plane is lossless)."""
    qz = cfg.quantize
    if not qz.host and qz.arc_keepbits >= 23:
        return ""
    rec: dict = {}
    if qz.host:
        rec["host"] = {
            "method": "round to multiples of q = 2**floor(log2(step_sigma * sigma_min)) per (pair, band), "
            "sigma_min = 1/sqrt(max invvar) of the plane; no dither",
            "step_sigma": qz.host_step,
            "max_abs_error_sigma": qz.host_step / 2,
            "rms_error_sigma": qz.host_step / 12**0.5,
        }
    if qz.arc_keepbits < 23:
        rec["arc"] = {
            "method": "float32 mantissa rounded to nearest even",
            "keepbits": qz.arc_keepbits,
            "max_rel_error": 2.0 ** -(qz.arc_keepbits + 1),
        }
    return json.dumps(rec, sort_keys=True)


def apply_quantization(arrays: dict[str, np.ndarray], record: str) -> dict[str, np.ndarray]:
    """The arrays to store: ``arrays`` with the recorded quantisation applied (a new dict; the
    input arrays are not modified). ``record`` is :func:`quantization_attrs`' JSON or ``""``."""
    if not record:
        return arrays
    rec = json.loads(record)
    out = dict(arrays)
    if "host" in rec:
        out["host"] = quantize_to_noise(arrays["host"], arrays["invvar"], float(rec["host"]["step_sigma"]))
    if "arc" in rec:
        out["arc"] = round_mantissa(arrays["arc"], int(rec["arc"]["keepbits"]))
    return out
