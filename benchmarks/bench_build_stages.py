"""Per-stage cost of a build, per pair, in one thread: hosts, params, render, derive, write.

One shard of ``--pairs`` default pairs (256) is rendered stage by stage, side by side in one
process (every stage repeated ``--repeat`` times, interleaved, the median kept):

- ``hosts``: ``synthetic_hosts`` (pixels, noise, masks; host facts separately as ``host_props``);
  with ``--compare-hosts`` also the previous FFT host renderer (``lensarray.hosts._fft_reference``);
- ``params``: ``sample_params``; ``render``: ``render_unit_arcs`` (the arc kernel);
- ``derive``: the rest of ``render_pairs`` (total minus the three stages above);
  ``derive_direct``: the same timed directly (``render_pairs`` from ``render_physical``'s
  output); ``derive_previous``: that with the derive step before issue #14's in-place rewrite
  (the bit-identical reference in ``tests/test_derive_identical.py``); ``*_cpu``: CPU seconds;
  ``physical``: ``render_physical`` (hosts, params, arcs as ``render_pairs`` calls them), whose
  excess over the isolated stages is what the subtraction above books as "derive";
- ``write``: one shard written into a fresh local store as a build task writes it
  (``store._write_shard_task``: the cube's arrays already opened by this worker, every variable
  written concurrently, then the digest, then the done marker); ``write_open``: opening the
  cube's arrays, once per worker and cube (amortised over the worker's shards);
  ``write_sequential``: the previous writer (each variable through ``group[name][a:b] = data``
  in turn, the group's array reopened each time), the "before" of issue #14;
- ``write_floor``, the floor of the write: the same bytes compressed with the same codecs (the
  numcodecs objects zarr's codecs wrap, same level/shuffle/typesize, inner chunks of 16 pairs),
  a crc32c per piece, written with one plain file write per variable (as zarr writes one object
  per variable and shard), in one thread. Not in the floor: zarr's shard index, its atomic
  temporary-file + rename per object, the string column. ``write / write_floor`` is the issue's
  "within 1.3x of compressing + writing the same bytes"; ``*_cpu`` are the same in CPU seconds
  of the process (all threads), steadier than wall time on a shared machine.

Also: ``quantize`` (``apply_quantization`` of the default quantised record), ``digest_crc32`` /
``digest_crc32c`` (the shard digest of every variable with zlib CRC-32, the format of cubes made
before ``shard_digest_algorithm``, and with crc32c, today's), and ``shard_task``: the whole build
task (``store._render_and_write_shard_task``: render one shard with the build's kernel and write
it into the opened cube). Every stage also in CPU seconds of the process (``*_cpu``, all
threads, user + system): on a loaded machine the wall times mostly measure waiting for a core,
and ``physical_over_stages_cpu`` / ``render_pairs_over_physical_plus_derive_cpu`` show where the
subtraction's "derive" excess is real work.

Prints a table per stage (ms/pair wall and CPU) and the ratios; JSON in results/<name>.json.

    python benchmarks/bench_build_stages.py [--pairs 256] [--repeat 5] [--name build_stages]
"""

from __future__ import annotations

import argparse
import functools
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
    from lensarray.store import BLOSC_BLOCKSIZE, IMAGE_CODECS, QUANTIZED_CODECS

    t0 = time.perf_counter()
    for name in VARIABLES:
        data = np.asarray(arrays[name]).astype(VARIABLES[name].dtype, copy=False)
        if data.dtype.kind in "US":
            continue  # string columns: tiny, vlen codec (not part of the floor)
        choice = QUANTIZED_CODECS[name] if name in quantized else IMAGE_CODECS.get(name, ("zstd", 3, "noshuffle"))
        codec = numcodec(*choice, BLOSC_BLOCKSIZE.get(name, 0))
        step = 16 if data.ndim >= 3 else data.shape[0]
        pieces = []
        for a in range(0, data.shape[0], step):
            enc = codec.encode(np.ascontiguousarray(data[a : a + step]))
            pieces.append(enc)
            pieces.append(crc32c(enc).to_bytes(4, "little"))
        with open(os.path.join(path, name), "wb") as f:
            f.write(b"".join(pieces))
    return time.perf_counter() - t0


def _sequential_write(group, start: int, stop: int, arrays: dict) -> None:
    """The previous writer (v0.2 before issue #14's writer change): one variable after another."""
    from lensarray.cube import VARIABLES
    from lensarray.store import DIGEST_VAR, DONE_VAR, _digest, cube_token

    token = cube_token(dict(group.attrs))
    digests = np.zeros(len(VARIABLES), np.uint32)
    for j, name in enumerate(VARIABLES):
        data = np.asarray(arrays[name]).astype(VARIABLES[name].dtype, copy=False)
        group[name][start:stop] = data
        digests[j] = _digest(token, 0, start, stop, name, data)
    group[DIGEST_VAR][0] = digests
    group[DONE_VAR][0] = 1


def _with_previous_brighten(render_pairs, ids, cfg, physical):
    """``render_pairs`` from ``physical`` with the derive step before issue #14's in-place rewrite
    (the reference kept in ``tests/test_derive_identical.py``, bit-identical output)."""
    import lensarray.pipeline as pipeline

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))
    from test_derive_identical import _brighten_ref

    current = pipeline._brighten
    pipeline._brighten = _brighten_ref
    try:
        return render_pairs(ids, cfg, physical=physical)
    finally:
        pipeline._brighten = current


def _timed(times: dict, name: str, fn, *args):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    times.setdefault(name, []).append(time.perf_counter() - t0)
    times.setdefault(f"{name}_cpu", []).append(time.process_time() - c0)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--compare-hosts", action="store_true", help="also time the previous FFT host renderer")
    ap.add_argument("--name", default="build_stages", help="results/<name>.json")
    args = ap.parse_args(argv)
    from lensarray.cube import VARIABLES
    from lensarray.hosts.synthetic import synthetic_host_properties, synthetic_hosts
    from lensarray.pipeline import BuildPlan, _render_block, _unit_arcs, render_pairs, render_physical
    from lensarray.quantize import apply_quantization, quantization_attrs
    from lensarray.sampling import sample_params
    from lensarray.store import create_store, cube_attrs, open_group

    n = args.pairs
    cfg = _cfg(n)
    ids = np.arange(n, dtype=np.int64)
    props = synthetic_host_properties(ids, cfg)
    hosts = synthetic_hosts(ids, cfg, props)
    params = sample_params(ids, cfg, hosts)
    arrays = render_pairs(ids, cfg)
    physical = render_physical(ids, cfg)
    qcfg = _cfg(n, **{"quantize.host": True, "quantize.arc_keepbits": 12})
    qrecord = quantization_attrs(qcfg)
    digest_arrays = {k: np.asarray(v).astype(VARIABLES[k].dtype, copy=False) for k, v in arrays.items()}

    def digests(algorithm: str) -> None:
        for name in VARIABLES:
            store._digest("0123456789abcdef", 0, 0, n, name, digest_arrays[name], algorithm)

    stages = {
        "host_props": lambda: synthetic_host_properties(ids, cfg),
        "hosts": lambda: synthetic_hosts(ids, cfg, props),
        "params": lambda: sample_params(ids, cfg, hosts),
        "render": lambda: _unit_arcs(params, cfg),
        "render_pairs": lambda: render_pairs(ids, cfg),
        "physical": lambda: render_physical(ids, cfg),
        "derive_direct": lambda: render_pairs(ids, cfg, physical=physical),
        "derive_previous": lambda: _with_previous_brighten(render_pairs, ids, cfg, physical),
        "quantize": lambda: apply_quantization(arrays, qrecord),
        "digest_crc32": lambda: digests("crc32"),
        "digest_crc32c": lambda: digests("crc32c"),
    }
    if args.compare_hosts:
        from lensarray.hosts import _fft_reference

        stages["hosts_fft_v01"] = lambda: _fft_reference.fft_synthetic_hosts(ids, cfg, props)
    root = tempfile.mkdtemp(prefix="lensarray-stages-")
    import lensarray.store as store

    plan = BuildPlan(config_json=cfg.to_json())

    chosen = dict(store.IMAGE_CODECS)
    codec_sets = {"": chosen, "_v01_codecs": {k: ("zstd", 3, "noshuffle") for k in chosen}}
    times: dict[str, list[float]] = {k: [] for k in stages}
    cpu: dict[str, list[float]] = {k: [] for k in stages}

    def fresh_store(name: str) -> str:
        url = os.path.join(root, name)
        create_store(
            url,
            n_pairs=n,
            bands=list(cfg.run.bands),
            size=cfg.run.size,
            chunk_pairs=16,
            shard_pairs=n,
            attrs=cube_attrs(cfg),
        )
        return url

    try:
        for rep in range(args.repeat):
            for name, fn in stages.items():
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            for tag, codecs in codec_sets.items():
                store.IMAGE_CODECS.clear()
                store.IMAGE_CODECS.update(codecs)
                url = fresh_store(f"c{rep}{tag}.zarr")
                attrs = dict(open_group(url).attrs)
                token = store.cube_token(attrs)
                _timed(times, f"write_open{tag}", store._opened_arrays, url, token)
                _timed(times, f"write{tag}", store._write_shard_task, url, None, 0, 0, n, arrays, token, attrs)
                if not tag:  # the whole build task: render and write one shard into the opened cube
                    render = functools.partial(_render_block, plan=plan)
                    task = store._render_and_write_shard_task
                    _timed(times, "shard_task", task, render, url, None, 0, 0, n, token, attrs)
                seq = fresh_store(f"s{rep}{tag}.zarr")
                _timed(times, f"write_sequential{tag}", _sequential_write, open_group(seq), 0, n, arrays)
                floor_dir = os.path.join(root, f"floor{rep}{tag}")
                os.makedirs(floor_dir)
                _timed(times, f"write_floor{tag}", _codec_floor, arrays, floor_dir, set())
                for measured in (url, seq, floor_dir):
                    shutil.rmtree(measured)
                store._OPENED.clear()
    finally:
        store.IMAGE_CODECS.clear()
        store.IMAGE_CODECS.update(chosen)
        shutil.rmtree(root, ignore_errors=True)
    ms = {k: 1e3 * float(np.median(v)) / n for k, v in times.items()}
    ms["derive"] = ms["render_pairs"] - ms["hosts"] - ms["host_props"] - ms["params"] - ms["render"]
    ms["derive_direct_cpu"] = 1e3 * float(np.median(cpu["derive_direct"])) / n
    ms["derive_previous_cpu"] = 1e3 * float(np.median(cpu["derive_previous"])) / n
    ms["total"] = ms["render_pairs"] + ms["write"]
    for k in stages:
        ms.setdefault(f"{k}_cpu", 1e3 * float(np.median(cpu[k])) / n)
    ms["derive_cpu"] = (
        ms["render_pairs_cpu"] - ms["hosts_cpu"] - ms["host_props_cpu"] - ms["params_cpu"] - ms["render_cpu"]
    )
    ms["total_cpu"] = ms["render_pairs_cpu"] + ms["write_cpu"]
    rows = [
        {"stage": k, "ms_per_pair": ms[k], "cpu_ms_per_pair": ms.get(f"{k}_cpu", float("nan"))}
        for k in (
            "host_props",
            "hosts",
            *(["hosts_fft_v01"] if args.compare_hosts else []),
            "params",
            "render",
            "derive",
            "physical",
            "derive_direct",
            "derive_previous",
            "render_pairs",
            "quantize",
            "write",
            "write_open",
            "write_sequential",
            "write_floor",
            "digest_crc32",
            "digest_crc32c",
            "write_v01_codecs",
            "write_floor_v01_codecs",
            "total",
            "shard_task",
        )
    ]
    ratios = {
        "hosts_over_render": (ms["hosts"] + ms["host_props"]) / ms["render"],
        "host_pixels_over_render": ms["hosts"] / ms["render"],
        "write_over_floor": ms["write"] / ms["write_floor"],
        "write_cpu_over_floor_cpu": ms["write_cpu"] / ms["write_floor_cpu"],
        "write_sequential_over_floor": ms["write_sequential"] / ms["write_floor"],
        "write_sequential_over_write": ms["write_sequential"] / ms["write"],
        "write_v01_codecs_over_floor": ms["write_v01_codecs"] / ms["write_floor_v01_codecs"],
        "render_over_total": ms["render"] / ms["total"],
        "derive_direct_over_render": ms["derive_direct"] / ms["render"],
        "physical_over_stages": ms["physical"] / (ms["hosts"] + ms["host_props"] + ms["params"] + ms["render"]),
        "derive_previous_over_render": ms["derive_previous"] / ms["render"],
        "derive_previous_over_direct": ms["derive_previous"] / ms["derive_direct"],
        "derive_previous_over_direct_cpu": ms["derive_previous_cpu"] / ms["derive_direct_cpu"],
        "physical_over_stages_cpu": ms["physical_cpu"]
        / (ms["hosts_cpu"] + ms["host_props_cpu"] + ms["params_cpu"] + ms["render_cpu"]),
        "render_pairs_over_physical_plus_derive_cpu": ms["render_pairs_cpu"]
        / (ms["physical_cpu"] + ms["derive_direct_cpu"]),
        "digest_crc32_over_crc32c": ms["digest_crc32"] / ms["digest_crc32c"],
        "render_over_shard_task": ms["render"] / ms["shard_task"],
        "render_over_shard_task_cpu": ms["render_cpu"] / ms["shard_task_cpu"],
    }
    if args.compare_hosts:
        ratios["hosts_fft_v01_over_render"] = ms["hosts_fft_v01"] / ms["render"]
        ratios["hosts_speedup_vs_v01"] = ms["hosts_fft_v01"] / ms["hosts"]
    print(table(rows, ["stage", "ms_per_pair", "cpu_ms_per_pair"]))
    print("  ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    path = write(args.name, {"pairs": n, "repeat": args.repeat, "ms_per_pair": ms, "ratios": ratios, "seconds": times})
    print(f"wrote {path}")
    return {"ms_per_pair": ms, "ratios": ratios}


if __name__ == "__main__":
    main()
