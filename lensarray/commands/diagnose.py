"""Audit a cube for shortcuts and systematics; write report.json and a self-contained report.html.

Gates: core_lr_auc (core pixels must not separate lens from control), mask_edge, null_identity
(with --null; else "not run"), metadata_leak_auc, systematics_role_flags. Exit status: 0 all gates pass, 1 a gate
fails (0 with --no-fail), 2 bad input. The thresholds are lensarray's
defaults or the auditor's --config, never the audited cube's own attrs; the report shows the cube's
recorded config beside them.

examples:
  lensarray diagnose cube.zarr --out report/
  lensarray diagnose cube.zarr --null null.zarr --anchors ../shared/data/cutouts/dr10_npz --out report/
"""

from __future__ import annotations

import argparse
import glob
import os

from ._common import (
    BadInputError,
    add_cluster_arguments,
    client_from_args,
    command_config,
    open_cube_from_args,
    progress_enabled,
)

NAME = "diagnose"
HELP = "audit a cube (core LR, null test, leakage, systematics, anchors) and write the report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="cube location (local path or fsspec URL)")
    p.add_argument(
        "--null",
        metavar="NULLSTORE",
        help="null twin of STORE (the same configuration built with --null) for the null LR gate",
    )
    p.add_argument(
        "--anchors",
        metavar="ANCHORS",
        help="anchor population: another cube, or cutout files (directory, glob or comma list of .npz/.fits)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory for report.json and report.html")
    p.add_argument(
        "--config",
        metavar="TOML",
        help="the auditor's configuration: its [diagnostics] section sets the gate thresholds and core "
        "geometry (default: lensarray's defaults; never the audited cube's own) and its [cluster] "
        "section where the audit runs",
    )
    p.add_argument("--no-fail", action="store_true", help="exit 0 even when a gate fails")
    p.add_argument(
        "--max-lr-pairs",
        type=int,
        default=20000,
        metavar="N",
        help="at most N pairs enter the core LR (seeded subsample beyond)",
    )
    p.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap resamples per CI")
    p.add_argument("--seed", type=int, default=0, help="seed of the LR subsample, bootstraps and ablation")
    p.add_argument(
        "--ablation",
        choices=("uniform", "fixed", "psf", "none"),
        default="uniform",
        help="centre-mask mode of the masked LR (uniform: r_mask in [3, 7] px)",
    )
    p.add_argument("--r-mask", type=float, default=5.0, metavar="PX", help="mask radius for --ablation fixed (pixels)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--address", dest="scheduler", help=argparse.SUPPRESS)  # the old name of --scheduler
    add_cluster_arguments(p)


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _check_local(url: str, what: str) -> None:
    if not _is_remote(url) and not os.path.exists(url.removeprefix("file://")):
        raise BadInputError(f"{what} = {url!r}: no such path (allowed an existing cube directory or fsspec URL)")


def run(args: argparse.Namespace) -> int:
    for label, url in (("STORE", args.store), ("--null", args.null)):
        if url:
            _check_local(url, label)
    if not (10 <= args.max_lr_pairs <= 100_000_000):
        raise BadInputError(f"--max-lr-pairs = {args.max_lr_pairs}: allowed range [10, 100000000]")
    if not (10 <= args.bootstrap <= 100_000):
        raise BadInputError(f"--bootstrap = {args.bootstrap}: allowed range [10, 100000]")
    if args.ablation == "fixed" and not (0 < args.r_mask <= 64):
        raise BadInputError(f"--r-mask = {args.r_mask}: allowed range (0, 64] pixels")
    anchors_is_cube = False
    if args.anchors:
        a = args.anchors
        if _is_remote(a) or os.path.isfile(os.path.join(a, "zarr.json")):
            anchors_is_cube = True
        elif not (os.path.exists(a) or glob.glob(a) or all(os.path.exists(p) for p in a.split(",") if p)):
            raise BadInputError(f"--anchors = {a!r}: no such cube, cutout file, directory or glob")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise BadInputError(f"--out = {args.out!r}: exists and is not a directory")
    cfg = command_config(args)
    from ..cluster import cluster_section

    cluster_section(args, cfg)  # validated before anything is opened or started

    from ..diagnostics.audit import check_null_twin, diagnose
    from ..diagnostics.report import write_report

    ds = open_cube_from_args(args.store, args, cfg)
    null_ds = open_cube_from_args(args.null, args, cfg, what="--null") if args.null else None
    anchors = open_cube_from_args(args.anchors, args, cfg, what="--anchors") if anchors_is_cube else args.anchors
    if null_ds is not None:
        check_null_twin(ds, null_ds, where=f"--null = {args.null!r}")
    ablation = (
        None
        if args.ablation == "none"
        else (
            {"mode": "uniform", "r_mask": (3.0, 7.0)}
            if args.ablation == "uniform"
            else {"mode": "fixed", "r_mask": args.r_mask}
            if args.ablation == "fixed"
            else {"mode": "psf", "pixel_scale": float(ds.attrs.get("pixel_scale", 0.262))}
        )
    )
    with client_from_args(args, cfg):
        try:  # only once every input is good and the cluster is up
            os.makedirs(args.out, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"--out = {args.out!r}: cannot create directory ({exc.strerror})") from None
        res, extras = diagnose(
            ds,
            null_ds=null_ds,
            anchors=anchors,
            max_lr_pairs=args.max_lr_pairs,
            seed=args.seed,
            n_boot=args.bootstrap,
            ablation=ablation,
            progress=progress_enabled(args),
            config=cfg if args.config else None,
            source=args.store,
        )
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
