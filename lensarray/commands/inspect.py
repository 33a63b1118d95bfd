"""Describe a cube: size, layout, bytes on disk, completeness, parameter ranges, configuration.

Reads metadata and per-pair variables only (no image data), so it is fast on any size.
"""

from __future__ import annotations

import json

import numpy as np

from ._common import add_cluster_arguments, open_cube_from_args, storage_options_from_args

NAME = "inspect"
HELP = "describe a cube: pairs, bands, chunks/shards, bytes on disk, parameter ranges, config"


def add_arguments(p) -> None:
    p.add_argument("store", help="cube location (local path or s3://...)")
    p.add_argument("--json", action="store_true", help="print a JSON document instead of text")
    add_cluster_arguments(p)


def describe(url: str, storage_options: dict | None = None) -> dict:
    """A JSON-able description of the cube at ``url``."""
    import fsspec

    from ..cube import open_cube
    from ..storage import zarr_array
    from ..store import completed_shards, open_group

    ds = open_cube(url, storage_options=storage_options)
    group = open_group(url, storage_options, mode="r")
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    nbytes = int(fs.du(path))
    host = zarr_array(group, "host")
    done = completed_shards(group)
    params = {}
    from ..cube import VARIABLES

    for name in VARIABLES:  # schema order: lens, source, PSF, derived, host facts
        var = ds[name]
        if var.dims[0] != "pair" or var.ndim > 2 or var.dtype.kind not in "fi":
            continue
        vals = np.asarray(var.values, dtype=np.float64)
        if var.ndim == 2:
            for j, band in enumerate(ds["band"].values):
                params[f"{name}[{band}]"] = _summary(vals[:, j])
        else:
            params[name] = _summary(vals)
    split_counts = {}
    if "split" in ds:
        codes, counts = np.unique(ds["split"].values, return_counts=True)
        names = {-1: "unassigned", 0: "train", 1: "val", 2: "test"}
        split_counts = {names.get(int(c), str(c)): int(k) for c, k in zip(codes, counts, strict=True)}
    return {
        "store": url,
        "pairs": int(ds.sizes["pair"]),
        "bands": [str(b) for b in ds["band"].values],
        "stamp": [int(ds.sizes["y"]), int(ds.sizes["x"])],
        "inner_chunk_pairs": int(host.chunks[0]),
        "shard_pairs": int(host.shards[0]) if host.shards else int(host.chunks[0]),
        "shards_done": int(done.sum()),
        "shards_total": int(done.size),
        "bytes_on_disk": nbytes,
        "bytes_per_pair": nbytes / max(int(ds.sizes["pair"]), 1),
        "schema_version": int(ds.attrs["schema_version"]),
        "lensarray_version": ds.attrs.get("lensarray_version"),
        "core_mask_policy": json.loads(ds.attrs.get("core_mask_policy", "{}") or "{}"),
        "null_injection": bool(ds.attrs.get("null_injection", 0)),
        "splits": split_counts,
        "parameters": params,
        "config": json.loads(ds.attrs.get("config", "{}")),
    }


def _summary(v: np.ndarray) -> dict:
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return {"min": None, "median": None, "max": None, "nan": int(v.size)}
    return {
        "min": float(finite.min()),
        "median": float(np.median(finite)),
        "max": float(finite.max()),
        "nan": int(v.size - finite.size),
    }


def run(args) -> int:
    from ..cluster import cluster_section

    cluster_section(args)  # shared flags are validated even where nothing is distributed
    open_cube_from_args(args.store, args)
    info = describe(args.store, storage_options_from_args(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"store          {info['store']}")
    print(f"pairs          {info['pairs']}  (x2 stamps: lens = host + arc, control = host)")
    print(f"bands          {' '.join(info['bands'])}   stamp {info['stamp'][0]}x{info['stamp'][1]} px")
    print(f"layout         inner chunk {info['inner_chunk_pairs']} pairs, shard {info['shard_pairs']} pairs")
    print(f"complete       {info['shards_done']}/{info['shards_total']} shards")
    print(f"on disk        {info['bytes_on_disk'] / 2**20:.1f} MiB ({info['bytes_per_pair'] / 1024:.1f} KiB/pair)")
    print(f"schema         v{info['schema_version']} (lensarray {info['lensarray_version']})")
    print(f"core mask      {info['core_mask_policy']}   null injection: {info['null_injection']}")
    if info["splits"]:
        print("splits         " + ", ".join(f"{k} {v}" for k, v in info["splits"].items()))
    print(f"{'parameter':<22}{'min':>12}{'median':>12}{'max':>12}{'NaN':>8}")
    for name, s in info["parameters"].items():
        if s["min"] is None:
            print(f"{name:<22}{'-':>12}{'-':>12}{'-':>12}{s['nan']:>8}")
        else:
            print(f"{name:<22}{s['min']:>12.4g}{s['median']:>12.4g}{s['max']:>12.4g}{s['nan']:>8}")
    print("config         " + json.dumps(info["config"], sort_keys=True))
    return 0
