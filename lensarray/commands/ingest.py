"""Build a host cube from real cutouts (Legacy Surveys FITS, npz/npy, parquet tables).

Each input is checked (readable, every band present and in order, pixel scale, finite pixels,
coverage); rejected inputs are listed with the reason and counted. Single-band coadds named
*_g.fits, *_r.fits, *_z.fits in one folder are merged. Without an invvar plane, a constant
per-band invvar is estimated from the robust sky noise of the outer stamp and flagged.

examples:
  lensarray ingest cutouts/*.fits --out hosts.zarr
  lensarray ingest dr10_npz/ --out hosts.zarr --size 64 --bands g,r,z
  lensarray build --hosts hosts.zarr --out real.zarr --pairs 1000
"""

from __future__ import annotations

import os
import sys

from ._common import BadInputError, add_cluster_arguments, progress_enabled, storage_options_from_args

NAME = "ingest"
HELP = "build a host cube from real cutouts (FITS, npz/npy, parquet)"


def add_arguments(p) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC", help="files, folders (searched recursively) or globs")
    p.add_argument(
        "--glob",
        default="*",
        metavar="PATTERN",
        help="file-name pattern inside folders, e.g. '*.fits' (hidden files are skipped)",
    )
    p.add_argument("--out", required=True, help="host cube to write (local path or s3://...)")
    p.add_argument("--size", type=int, default=64, help="stamp side in pixels (crop/pad about the centre; default 64)")
    p.add_argument("--bands", default="g,r,z", help="bands in stored order (default g,r,z)")
    p.add_argument("--pixel-scale", type=float, default=0.262, help="required pixel scale, arcsec (default 0.262)")
    p.add_argument("--psf-fwhm", help="PSF FWHM per band, arcsec, e.g. 1.5,1.35,1.3 (default: DR10 medians)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing host cube (only a host cube; inputs are checked first)",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    add_cluster_arguments(p)


def run(args) -> int:
    from ..cluster import cluster_section
    from ..hosts.cutouts import expand_inputs, ingest
    from ..storage import check_destination

    bands = [b.strip() for b in args.bands.split(",") if b.strip()]
    if not bands or any(b not in ("g", "r", "i", "z") for b in bands) or len(set(bands)) != len(bands):
        raise BadInputError(f"--bands {args.bands!r}: allowed distinct bands from g, r, i, z, e.g. g,r,z")
    if not 16 <= args.size <= 512:
        raise BadInputError(f"--size {args.size}: allowed range [16, 512]")
    if not 0.01 <= args.pixel_scale <= 2.0:
        raise BadInputError(f"--pixel-scale {args.pixel_scale}: allowed range [0.01, 2.0] arcsec")
    psf = {}
    if args.psf_fwhm:
        try:
            vals = [float(v) for v in args.psf_fwhm.split(",")]
        except ValueError:
            vals = []
        if len(vals) != len(bands) or any(not 0.3 <= v <= 5 for v in vals):
            raise BadInputError(f"--psf-fwhm {args.psf_fwhm!r}: allowed {len(bands)} values in [0.3, 5] arcsec")
        psf = dict(zip(bands, vals, strict=True))
    if not args.out or not args.out.strip():
        raise BadInputError("--out = '': allowed a local path or an fsspec URL of the host cube to write")
    cluster_section(args)
    options = storage_options_from_args(args)
    check_destination(args.out, options)
    missing = [s for s in args.sources if not (os.path.exists(s) or any(ch in s for ch in "*?["))]
    if missing:
        raise BadInputError(f"SRC {missing[0]!r}: no such file or folder")
    paths = expand_inputs(args.sources, pattern=args.glob)
    if not paths:
        raise BadInputError(f"no input files matched {args.sources} (--glob {args.glob!r})")
    report = ingest(
        paths,
        args.out,
        size=args.size,
        bands=bands,
        pixel_scale=args.pixel_scale,
        psf_fwhm=psf,
        overwrite=args.overwrite,
        storage_options=options,
        progress=progress_enabled(args),
    )
    for line in report.lines():
        print(line, file=sys.stderr)
    print(f"wrote {args.out}: {len(report.accepted)} hosts")
    return 0
