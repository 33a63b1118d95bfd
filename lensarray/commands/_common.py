"""Shared helpers of the command modules: one-line errors and cluster/storage flags."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from importlib import import_module

__all__ = ["fail", "add_cluster_arguments", "client_from_args", "storage_options_from_args"]


def fail(message: str, status: int = 2) -> int:
    """Print one line to stderr and return the exit status (2 = bad input)."""
    print(f"lensarray: error: {message}", file=sys.stderr)
    return status


def _cluster():
    try:
        return import_module("lensarray.cluster")
    except ModuleNotFoundError as exc:
        if exc.name != "lensarray.cluster":
            raise
        return None


def add_cluster_arguments(parser) -> None:
    """Cluster and storage flags (delegates to :mod:`lensarray.cluster` when present)."""
    mod = _cluster()
    if mod is not None and hasattr(mod, "add_cluster_arguments"):
        mod.add_cluster_arguments(parser)
        return
    parser.add_argument("--workers", type=int, default=None,
                        help="local Dask workers (processes); 0 runs synchronously in this process")


@contextmanager
def client_from_args(args, cfg):
    """A distributed Client (or None for synchronous runs) for the duration of a command."""
    mod = _cluster()
    if mod is not None and hasattr(mod, "client_from_args"):
        with mod.client_from_args(args, cfg) as client:
            yield client
        return
    workers = args.workers if args.workers is not None else cfg.cluster.workers
    if workers == 0 or cfg.cluster.kind == "none":
        yield None
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=cfg.cluster.threads_per_worker,
                      memory_limit=cfg.cluster.memory_limit, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def storage_options_from_args(args, cfg=None) -> dict:
    """fsspec options from flags/config/environment (never stored in the cube)."""
    mod = None
    try:
        mod = import_module("lensarray.storage")
    except ModuleNotFoundError as exc:
        if exc.name != "lensarray.storage":
            raise
    if mod is not None and hasattr(mod, "storage_options_from"):
        return mod.storage_options_from(args, cfg)
    return {}
