"""Codec choice per variable, by measurement: bytes/pair and compress ms/pair on one shard.

Renders ``--pairs`` default pairs (one shard) once, lossless and quantised (``[quantize]``
host step 0.2 sigma, arc 12 mantissa bits), then compresses every image plane in inner chunks
of 16 pairs with each candidate (the same C libraries zarr's codecs call: numcodecs Zstd and
Blosc, one thread), repeated ``--repeat`` times interleaved, median kept. Prints a table per
variable and the per-pair totals of the store's chosen codecs (``store.IMAGE_CODECS``) against
zstd level 3 everywhere (v0.1); JSON in results/<name>.json.

    python benchmarks/bench_codecs.py [--pairs 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import table, write  # noqa: E402

CANDIDATES = [
    ("zstd", 1, "noshuffle"),
    ("zstd", 3, "noshuffle"),
    ("zstd", 1, "shuffle"),
    ("zstd", 1, "bitshuffle"),
    ("zstd", 3, "bitshuffle"),
    ("lz4", 5, "shuffle"),
    ("lz4", 5, "bitshuffle"),
    ("zstd", 1, "shuffle", 2**16),
    ("zstd", 1, "shuffle", 2**18),
    ("lz4", 5, "shuffle", 2**18),
    ("lz4", 5, "bitshuffle", 2**18),
    ("none", 0, "noshuffle"),
]


def numcodec(cname: str, level: int, shuffle: str, blocksize: int = 0):
    """The numcodecs object equal to zarr's ZstdCodec (no shuffle) or BloscCodec (``blocksize``
    0: Blosc's own choice, as ``store.BLOSC_BLOCKSIZE`` leaves it unless set)."""
    import numcodecs
    from numcodecs import Blosc, Zstd

    numcodecs.blosc.use_threads = False
    if cname == "none":
        return None
    if cname == "zstd" and shuffle == "noshuffle":
        return Zstd(level=level)
    return Blosc(
        cname=cname,
        clevel=level,
        shuffle={"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}[shuffle],
        blocksize=blocksize,
    )


def encoded_size(codec, data: np.ndarray, chunk: int = 16) -> int:
    """Bytes after compressing ``data`` in inner chunks of ``chunk`` pairs."""
    if codec is None:
        return int(data.nbytes)
    return sum(len(codec.encode(np.ascontiguousarray(data[a : a + chunk]))) for a in range(0, data.shape[0], chunk))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--name", default="codecs", help="results/<name>.json")
    args = ap.parse_args(argv)
    from lensarray.config import RunConfig
    from lensarray.pipeline import render_pairs
    from lensarray.quantize import apply_quantization, quantization_attrs
    from lensarray.store import BLOSC_BLOCKSIZE, IMAGE_CODECS, QUANTIZED_CODECS

    n = args.pairs
    cfg = RunConfig().replace(**{"run.n_pairs": n, "quantize.host": True, "quantize.arc_keepbits": 12}).validate()
    arrays = render_pairs(np.arange(n), cfg)
    quant = apply_quantization(arrays, quantization_attrs(cfg))
    planes = {
        "host": arrays["host"],
        "invvar": arrays["invvar"],
        "arc": arrays["arc"],
        "maskbits": arrays["maskbits"],
        "host_quantized": quant["host"],
        "arc_keepbits12": quant["arc"],
    }
    times: dict[tuple, list[float]] = {}
    sizes: dict[tuple, int] = {}
    for _ in range(args.repeat):
        for var, data in planes.items():
            for cand in CANDIDATES:
                codec = numcodec(*cand)
                t0 = time.perf_counter()
                sizes[(var, cand)] = encoded_size(codec, data)
                times.setdefault((var, cand), []).append(time.perf_counter() - t0)
    rows = []
    for (var, cand), ts in times.items():
        rows.append(
            {
                "variable": var,
                "codec": "-".join(map(str, cand)),
                "bytes_per_pair": sizes[(var, cand)] / n,
                "ratio": planes[var].nbytes / sizes[(var, cand)],
                "ms_per_pair": 1e3 * float(np.median(ts)) / n,
            }
        )
    print(table(rows, ["variable", "codec", "bytes_per_pair", "ratio", "ms_per_pair"]))

    def total(choice: dict) -> dict:
        b = sum(sizes[(v, c)] for v, c in choice.items()) / n
        t = sum(float(np.median(times[(v, c)])) for v, c in choice.items()) * 1e3 / n
        return {"bytes_per_pair": b, "compress_ms_per_pair": t}

    v01 = {v: ("zstd", 3, "noshuffle") for v in ("host", "invvar", "arc", "maskbits")}

    def with_block(v: str, choice: tuple) -> tuple:
        return (*choice, BLOSC_BLOCKSIZE[v]) if BLOSC_BLOCKSIZE.get(v) else choice

    chosen = {v: with_block(v, IMAGE_CODECS[v]) for v in ("host", "invvar", "arc", "maskbits")}
    quantized = {**chosen, "host_quantized": QUANTIZED_CODECS["host"], "arc_keepbits12": QUANTIZED_CODECS["arc"]}
    quantized.pop("host"), quantized.pop("arc")
    before_h14 = {**chosen, "invvar": IMAGE_CODECS["invvar"]}  # Blosc's own block size for invvar
    totals = {
        "v01_zstd3_everywhere": total(v01),
        "chosen_lossless_before_issue14_blocksize": total(before_h14),
        "chosen_lossless": total(chosen),
        "chosen_quantized_host_arc12": total(quantized),
    }
    for k, v in totals.items():
        print(
            f"{k}: {v['bytes_per_pair'] / 1e3:.1f} kB/pair (image planes), compress {v['compress_ms_per_pair']:.3f} ms/pair"
        )
    print(
        "note: the invvar rows are the v0.2 synthetic invvar (12 mantissa bits); v0.1's full-precision plane "
        "compressed to 43.0 kB/pair with zstd 3"
    )
    path = write(args.name, {"pairs": n, "rows": rows, "totals": totals})
    print(f"wrote {path}")
    return {"rows": rows, "totals": totals}


if __name__ == "__main__":
    main()
