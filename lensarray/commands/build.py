"""Build a paired lens/control cube.

Without --config the embedded default is used: synthetic DR10-like LRG hosts, SIE+shear lenses,
Sersic sources with arc S/N calibrated to the default target distribution. Command-line flags
override the configuration. An existing store is never replaced without --overwrite (and only a
lensarray cube is ever replaced); an interrupted build is finished with --resume (only missing
shards are rendered; without configuration flags the stored configuration is used), and
--resume --repair first rewrites every finished shard that fails its digest.

examples:
  lensarray build --out cube.zarr --pairs 10000
  lensarray build --out null.zarr --pairs 10000 --null
  lensarray build --out masked.zarr --core-mask hard:5 --workers 4
  lensarray build --out s3://bucket/cube.zarr --config run.toml --scheduler tcp://host:8786 --resume
  lensarray build --out cube.zarr --resume --repair
"""

from __future__ import annotations

import sys

from ._common import BadInputError, add_cluster_arguments, client_from_args, progress_enabled, storage_options_from_args

NAME = "build"
HELP = "build a cube of lens/control pairs (embedded default: synthetic LRG hosts)"


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="destination store: a local path or s3://bucket/key")
    p.add_argument("--config", help="TOML run configuration (default: the embedded default)")
    p.add_argument("--pairs", type=int, help="number of pairs (run.n_pairs)")
    p.add_argument("--seed", type=int, help="root seed (run.seed); same seed = bit-identical cube")
    p.add_argument(
        "--core-mask",
        metavar="POLICY",
        help="core-mask policy at injection: none | hard:R | taper:R:W (R, W in pixels)",
    )
    p.add_argument(
        "--null", action="store_true", default=None, help="null injection: scale every arc to zero, change nothing else"
    )
    p.add_argument("--hosts", metavar="HOSTCUBE", help="inject into hosts from a host cube made by `lensarray ingest`")
    p.add_argument("--shard-pairs", type=int, help="pairs per Zarr shard (write unit)")
    p.add_argument("--chunk-pairs", type=int, help="pairs per inner Zarr chunk (read unit)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--resume", action="store_true", help="finish an interrupted build at --out")
    p.add_argument(
        "--repair",
        action="store_true",
        help="with --resume: check every finished shard's digest and rewrite the bad ones",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    add_cluster_arguments(p)


def config_from_args(args):
    """The validated RunConfig for these arguments (raises ConfigError)."""
    from ..config import ConfigError, load_config
    from ..masking import parse_core_mask

    over = {
        "run.n_pairs": args.pairs,
        "run.seed": args.seed,
        "run.null": args.null,
        "run.shard_pairs": args.shard_pairs,
        "run.chunk_pairs": args.chunk_pairs,
        "hosts.source": args.hosts,
    }
    if args.core_mask is not None:
        try:
            policy, radius, width = parse_core_mask(args.core_mask)
        except ValueError as exc:
            raise ConfigError(f"--core-mask {args.core_mask!r}: {exc}") from None
        over.update({"core_mask.policy": policy, "core_mask.radius": radius, "core_mask.width": width})
    cluster = {}
    if getattr(args, "workers", None) is not None:
        if args.workers < 0:
            raise ConfigError(f"--workers = {args.workers}: allowed >= 0 (0 = synchronous)")
        cluster["cluster.workers" if args.workers > 0 else "cluster.kind"] = (
            args.workers if args.workers > 0 else "none"
        )
    if getattr(args, "resume", False) and args.config is None and all(v is None for v in over.values()):
        return _stored_config(args).replace(**cluster).validate()
    return load_config(args.config, **over, **cluster)


def _stored_config(args):
    """``--resume`` without configuration flags: the configuration recorded in the cube."""
    from ..pipeline import config_of_store
    from ..storage import check_destination
    from ..store import nothing_to_resume, store_exists

    options = storage_options_from_args(args)
    check_destination(args.out, options)
    if not store_exists(args.out, options):
        raise nothing_to_resume(args.out)
    return config_of_store(args.out, options)


def run(args) -> int:
    from ..cluster import cluster_section
    from ..pipeline import build
    from ..storage import check_destination

    if not args.out or not args.out.strip():
        raise BadInputError("--out '': allowed a local path or an fsspec URL of the store to write")
    cfg = config_from_args(args)
    options = storage_options_from_args(args, cfg)
    # every input and the destination are checked before a cluster starts (~7 s)
    cluster_section(args, cfg)
    if cfg.hosts.source != "synthetic":
        from ..hosts.cutouts import HostCube

        HostCube(cfg.hosts.source, options, field="--hosts" if args.hosts else "hosts.source")
    check_destination(args.out, options)
    from ..store import StoreExistsError, StoreLock, store_exists

    exists = store_exists(args.out, options)
    if exists:
        StoreLock(args.out, options).check()  # a store being written is refused as such, first
    if not (args.overwrite or args.resume) and exists:
        raise StoreExistsError(f"{args.out} already exists: pass --overwrite to replace it or --resume to finish it")
    with client_from_args(args, cfg) as client:
        result = build(
            cfg,
            args.out,
            overwrite=args.overwrite,
            resume=args.resume,
            repair=args.repair,
            client=client,
            progress=progress_enabled(args),
            storage_options=options,
        )
    print(result, file=sys.stderr)
    return 0
