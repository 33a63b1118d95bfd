"""Audit a cube for shortcuts and systematics; write report.json and a self-contained report.html.

Gates: core_lr_auc (core pixels must not separate lens from control), mask_edge, null_identity
(with --null; else "not run"), metadata_leak_auc, systematics_role_flags. Exit status: 0 all gates pass, 1 a gate
fails (0 with --no-fail), 2 bad input.

examples:
  lensarray diagnose cube.zarr --out report/
  lensarray diagnose cube.zarr --null null.zarr --anchors ../shared/data/cutouts/dr10_npz --out report/
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

NAME = "diagnose"
HELP = "audit a cube (core LR, null test, leakage, systematics, anchors) and write the report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="cube location (local path or fsspec URL)")
    p.add_argument("--null", metavar="NULLSTORE", help="null-injection cube (built with --null) for the null LR gate")
    p.add_argument("--anchors", metavar="ANCHORS",
                   help="anchor population: another cube, or cutout files (directory, glob or comma list of .npz/.fits)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory for report.json and report.html")
    p.add_argument("--no-fail", action="store_true", help="exit 0 even when a gate fails")
    p.add_argument("--max-lr-pairs", type=int, default=20000, metavar="N",
                   help="at most N pairs enter the core LR (seeded subsample beyond; default 20000)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap resamples per CI (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the LR subsample, bootstraps and ablation (default 0)")
    p.add_argument("--ablation", choices=("uniform", "fixed", "psf", "none"), default="uniform",
                   help="centre-mask mode of the masked LR (default uniform r_mask in [3, 7] px)")
    p.add_argument("--r-mask", type=float, default=5.0, metavar="PX", help="mask radius for --ablation fixed (pixels)")
    p.add_argument("--address", metavar="TCP", help="use an existing dask scheduler (tcp://host:port)")
    p.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint for s3:// stores")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fail(msg: str) -> int:
    print(f"lensarray diagnose: error: {msg}", file=sys.stderr)
    return 2


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def open_store(url: str, storage_options: dict | None = None):
    """Open a cube lazily (``lensarray.cube.open_cube``; plain ``xarray.open_zarr`` if store.py is absent)."""
    from ..cube import open_cube, validate_cube

    try:
        return open_cube(url, storage_options=storage_options)
    except ModuleNotFoundError as exc:
        if exc.name != "lensarray.store":
            raise
        import warnings

        import xarray as xr

        with warnings.catch_warnings():  # unconsolidated v3 stores are the norm, not a problem
            warnings.simplefilter("ignore", RuntimeWarning)
            ds = xr.open_zarr(url, storage_options=storage_options, chunks={}, consolidated=None)
        return validate_cube(ds, where=url)


def _check_local(url: str, what: str) -> str | None:
    if not _is_remote(url) and not os.path.exists(url.removeprefix("file://")):
        return f"{what} = {url!r}: no such path (allowed an existing cube directory or fsspec URL)"
    return None


def run(args: argparse.Namespace) -> int:
    for label, url in (("STORE", args.store), ("--null", args.null)):
        if url and (err := _check_local(url, label)):
            return _fail(err)
    if not (10 <= args.max_lr_pairs <= 100_000_000):
        return _fail(f"--max-lr-pairs = {args.max_lr_pairs}: allowed range [10, 100000000]")
    if not (10 <= args.bootstrap <= 100_000):
        return _fail(f"--bootstrap = {args.bootstrap}: allowed range [10, 100000]")
    if args.ablation == "fixed" and not (0 < args.r_mask <= 64):
        return _fail(f"--r-mask = {args.r_mask}: allowed range (0, 64] pixels")
    anchors_is_cube = False
    if args.anchors:
        a = args.anchors
        if _is_remote(a) or os.path.isfile(os.path.join(a, "zarr.json")):
            anchors_is_cube = True
        elif not (os.path.exists(a) or glob.glob(a) or all(os.path.exists(p) for p in a.split(",") if p)):
            return _fail(f"--anchors = {a!r}: no such cube, cutout file, directory or glob")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        return _fail(f"--out = {args.out!r}: cannot create directory ({exc.strerror})")

    from ..cube import CubeSchemaError
    from ..diagnostics.anchors import AnchorError
    from ..diagnostics.audit import diagnose
    from ..diagnostics.report import write_report

    so = {"endpoint_url": args.endpoint_url} if args.endpoint_url else None
    try:
        ds = open_store(args.store, so)
        null_ds = open_store(args.null, so) if args.null else None
        anchors = open_store(args.anchors, so) if anchors_is_cube else args.anchors
    except (CubeSchemaError, FileNotFoundError, ValueError, KeyError) as exc:
        return _fail(f"cannot open cube: {exc}")
    if null_ds is not None and (null_ds.sizes.get("x") != ds.sizes.get("x")
                                or list(null_ds["band"].values) != list(ds["band"].values)):
        return _fail(f"--null = {args.null!r}: allowed a cube with the bands and stamp size of STORE")
    ablation = None if args.ablation == "none" else (
        {"mode": "uniform", "r_mask": (3.0, 7.0)} if args.ablation == "uniform" else
        {"mode": "fixed", "r_mask": args.r_mask} if args.ablation == "fixed" else
        {"mode": "psf", "pixel_scale": float(ds.attrs.get("pixel_scale", 0.262))})
    client = None
    if args.address:
        from distributed import Client

        client = Client(args.address)
    try:
        res, extras = diagnose(ds, null_ds=null_ds, anchors=anchors, max_lr_pairs=args.max_lr_pairs, seed=args.seed,
                               n_boot=args.bootstrap, ablation=ablation, progress=not args.no_progress,
                               source=args.store)
    except (AnchorError, ValueError) as exc:
        return _fail(str(exc).splitlines()[0])
    finally:
        if client is not None:
            client.close()
    res["null_source"] = args.null
    res["anchors_source"] = args.anchors
    paths = write_report(res, extras, args.out)
    for g in res["gates"]:
        value = "n/a" if g["value"] is None else f"{g['value']:.4f}"
        print(f"{g['status'].upper():<8} {g['name']:<24} {value:<8} threshold {g['threshold']}")
    print(f"report: {paths['html']}  ({paths['json']})")
    if not res["passed"] and not args.no_fail:
        return 1
    return 0
