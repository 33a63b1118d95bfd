"""User and system CPU of one shard's ``render_pairs`` under the worker memory settings.

Each variant runs in a fresh subprocess (the settings act at process start): default glibc and
numpy; the workers' ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (64 MiB); numpy's
transparent-huge-page madvise off (``NUMPY_MADVISE_HUGEPAGE=0``); both (what
``lensarray.cluster.local_cluster`` workers get). Per variant, ``--repeat`` times interleaved:
``render_pairs`` of a fresh shard, ``render_physical``, and the derive step from that fresh
physical output and from a reused one (``getrusage``: user, system seconds, minor faults).
System time of ``render_pairs`` is what fresh buffers cost the kernel (page faults; with THP
madvise also synchronous compaction on a machine short of free memory).

    python benchmarks/bench_build_pagefaults.py [--pairs 256] [--repeat 5] [--name build_pagefaults]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

from common import table, write  # noqa: E402

MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(64 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20)}
VARIANTS = {
    "default": {},
    "malloc": MALLOC,
    "no_thp_madvise": {"NUMPY_MADVISE_HUGEPAGE": "0"},
    "malloc_and_no_thp_madvise": {**MALLOC, "NUMPY_MADVISE_HUGEPAGE": "0"},
}


def _measure(pairs: int, repeat: int) -> dict:
    import resource

    import numpy as np

    from lensarray.config import RunConfig
    from lensarray.pipeline import render_pairs, render_physical

    cfg = RunConfig().replace(**{"run.n_pairs": pairs, "run.shard_pairs": pairs, "run.chunk_pairs": 16}).validate()
    ids = np.arange(pairs)
    reused = render_physical(ids, cfg)
    out: dict[str, list] = {}

    def rec(name, fn):
        a = resource.getrusage(resource.RUSAGE_SELF)
        res = fn()
        b = resource.getrusage(resource.RUSAGE_SELF)
        out.setdefault(name, []).append([b.ru_utime - a.ru_utime, b.ru_stime - a.ru_stime, b.ru_minflt - a.ru_minflt])
        return res

    for _ in range(repeat):
        rec("render_pairs", lambda: render_pairs(ids, cfg))
        fresh = rec("physical", lambda: render_physical(ids, cfg))
        rec("derive_fresh", lambda fresh=fresh: render_pairs(ids, cfg, physical=fresh))
        rec("derive_reused", lambda: render_pairs(ids, cfg, physical=reused))
    med = {k: np.median(np.array(v), axis=0) for k, v in out.items()}
    return {
        k: {"user_ms": 1e3 * v[0] / pairs, "sys_ms": 1e3 * v[1] / pairs, "minflt": v[2] / pairs} for k, v in med.items()
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--name", default="build_pagefaults", help="results/<name>.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.pairs, args.repeat)))
        return {}
    results, rows = {}, []
    for variant, env in VARIANTS.items():
        run_env = {k: v for k, v in os.environ.items() if k not in (*MALLOC, "NUMPY_MADVISE_HUGEPAGE")}
        cmd = [sys.executable, __file__, "--child", "--pairs", str(args.pairs), "--repeat", str(args.repeat)]
        done = subprocess.run(cmd, env={**run_env, **env}, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        for stage, v in results[variant].items():
            rows.append({"variant": variant, "stage": stage, **v})
    print(table(rows, ["variant", "stage", "user_ms", "sys_ms", "minflt"]))
    path = write(args.name, {"pairs": args.pairs, "repeat": args.repeat, "per_pair": results})
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
