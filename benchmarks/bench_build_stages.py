"""Per-stage cost of a build, per pair, in one thread: hosts, params, render, derive, write.

One shard of ``--pairs`` default pairs (256) is rendered stage by stage, side by side in one
process (every stage repeated ``--repeat`` times, interleaved, the median kept):

- ``hosts``: ``synthetic_hosts`` (pixels, noise, masks; host facts separately as ``host_props``);
  with ``--compare-hosts`` also the previous FFT host renderer (``lensarray.hosts._fft_reference``);
- ``params``: ``sample_params``; ``render``: ``render_unit_arcs`` (the arc kernel);
- ``derive``: the rest of ``render_pairs`` (total minus the three stages above);
- ``write``: ``write_shard`` into a fresh local store, against its floor: compressing every
  variable with the store's own codecs and writing the bytes to one file per variable.

Prints a table per stage (ms/pair) and the host / render ratio; JSON in results/<name>.json.

    python benchmarks/bench_build_stages.py [--pairs 256] [--repeat 5] [--name build_stages]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

from common import table, write  # noqa: E402


def _cfg(n: int, **over):
    from lensarray.config import RunConfig

    return RunConfig().replace(**{"run.n_pairs": n, "run.shard_pairs": n, "run.chunk_pairs": 16, **over}).validate()


def _codec_floor(arrays: dict, path: str, quantized: set) -> float:
    """Seconds to compress every variable with the store's codec choice (the same C libraries,
    one thread, inner chunks of 16 pairs), checksum it, and write the bytes, one file each."""
    from bench_codecs import numcodec
    from crc32c import crc32c

    from lensarray.cube import VARIABLES
    from lensarray.store import IMAGE_CODECS, QUANTIZED_CODECS

    t0 = time.perf_counter()
    for name in VARIABLES:
        data = np.asarray(arrays[name]).astype(VARIABLES[name].dtype, copy=False)
        if data.dtype.kind in "US":
            continue  # string columns: tiny, vlen codec (not part of the floor)
        choice = (QUANTIZED_CODECS[name] if name in quantized else IMAGE_CODECS.get(name, ("zstd", 3, "noshuffle")))
        codec = numcodec(*choice)
        step = 16 if data.ndim >= 3 else data.shape[0]
        pieces = []
        for a in range(0, data.shape[0], step):
            enc = codec.encode(np.ascontiguousarray(data[a:a + step]))
            pieces.append(enc)
            pieces.append(crc32c(enc).to_bytes(4, "little"))
        with open(os.path.join(path, name), "wb") as f:
            f.write(b"".join(pieces))
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--compare-hosts", action="store_true", help="also time the previous FFT host renderer")
    ap.add_argument("--name", default="build_stages", help="results/<name>.json")
    args = ap.parse_args(argv)
    from lensarray.hosts.synthetic import synthetic_host_properties, synthetic_hosts
    from lensarray.physics.render import render_unit_arcs
    from lensarray.pipeline import render_pairs
    from lensarray.sampling import sample_params
    from lensarray.store import create_store, cube_attrs, open_group, write_shard

    n = args.pairs
    cfg = _cfg(n)
    ids = np.arange(n, dtype=np.int64)
    props = synthetic_host_properties(ids, cfg)
    hosts = synthetic_hosts(ids, cfg, props)
    params = sample_params(ids, cfg, hosts)
    arrays = render_pairs(ids, cfg)
    stages = {
        "host_props": lambda: synthetic_host_properties(ids, cfg),
        "hosts": lambda: synthetic_hosts(ids, cfg, props),
        "params": lambda: sample_params(ids, cfg, hosts),
        "render": lambda: render_unit_arcs(params, size=cfg.run.size, pixel_scale=cfg.run.pixel_scale,
                                           bands=tuple(cfg.run.bands), supersample=cfg.render.supersample,
                                           tolerance=cfg.render.tolerance, psf_model=cfg.psf.model,
                                           psf_beta=cfg.psf.moffat_beta),
        "render_pairs": lambda: render_pairs(ids, cfg),
    }
    if args.compare_hosts:
        from lensarray.hosts import _fft_reference

        stages["hosts_fft_v01"] = lambda: _fft_reference.fft_synthetic_hosts(ids, cfg, props)
    root = tempfile.mkdtemp(prefix="lensarray-stages-")
    import lensarray.store as store

    chosen = dict(store.IMAGE_CODECS)
    codec_sets = {"": chosen, "_v01_codecs": {k: ("zstd", 3, "noshuffle") for k in chosen}}
    times: dict[str, list[float]] = {k: [] for k in stages}
    for tag in codec_sets:
        times[f"write{tag}"], times[f"write_floor{tag}"] = [], []
    try:
        for rep in range(args.repeat):
            for name, fn in stages.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
            for tag, codecs in codec_sets.items():
                store.IMAGE_CODECS.clear()
                store.IMAGE_CODECS.update(codecs)
                url = os.path.join(root, f"c{rep}{tag}.zarr")
                create_store(url, n_pairs=n, bands=list(cfg.run.bands), size=cfg.run.size, chunk_pairs=16,
                             shard_pairs=n, attrs=cube_attrs(cfg))
                g = open_group(url)
                t0 = time.perf_counter()
                write_shard(g, 0, 0, n, arrays)
                times[f"write{tag}"].append(time.perf_counter() - t0)
                floor_dir = os.path.join(root, f"floor{rep}{tag}")
                os.makedirs(floor_dir)
                times[f"write_floor{tag}"].append(_codec_floor(arrays, floor_dir, set()))
                shutil.rmtree(url)
                shutil.rmtree(floor_dir)
    finally:
        store.IMAGE_CODECS.clear()
        store.IMAGE_CODECS.update(chosen)
        shutil.rmtree(root, ignore_errors=True)
    ms = {k: 1e3 * float(np.median(v)) / n for k, v in times.items()}
    ms["derive"] = ms["render_pairs"] - ms["hosts"] - ms["host_props"] - ms["params"] - ms["render"]
    ms["total"] = ms["render_pairs"] + ms["write"]
    rows = [{"stage": k, "ms_per_pair": ms[k]} for k in
            ("host_props", "hosts", *(["hosts_fft_v01"] if args.compare_hosts else []), "params", "render",
             "derive", "write", "write_floor", "write_v01_codecs", "write_floor_v01_codecs", "total")]
    ratios = {"hosts_over_render": (ms["hosts"] + ms["host_props"]) / ms["render"],
              "host_pixels_over_render": ms["hosts"] / ms["render"],
              "write_over_floor": ms["write"] / ms["write_floor"],
              "write_v01_codecs_over_floor": ms["write_v01_codecs"] / ms["write_floor_v01_codecs"],
              "render_over_total": ms["render"] / ms["total"]}
    if args.compare_hosts:
        ratios["hosts_fft_v01_over_render"] = ms["hosts_fft_v01"] / ms["render"]
        ratios["hosts_speedup_vs_v01"] = ms["hosts_fft_v01"] / ms["hosts"]
    print(table(rows, ["stage", "ms_per_pair"]))
    print("  ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    path = write(args.name, {"pairs": n, "repeat": args.repeat, "ms_per_pair": ms, "ratios": ratios,
                             "seconds": times})
    print(f"wrote {path}")
    return {"ms_per_pair": ms, "ratios": ratios}


if __name__ == "__main__":
    main()
