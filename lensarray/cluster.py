"""Where work runs: a LocalCluster (default), an existing scheduler, or dask-kubernetes.

The pipeline and diagnostics take a ``distributed.Client`` or ``None`` (synchronous, in-process);
this module turns CLI flags / the ``[cluster]`` configuration into one and closes what it
started.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from .errors import BadInputError

__all__ = ["ClusterError", "add_cluster_arguments", "client_from_args", "get_client"]


class ClusterError(BadInputError, RuntimeError):
    """A cluster could not be started or reached; the message is one line."""


#: Environment of local worker processes (set through the nanny, which otherwise sets
#: ``MALLOC_TRIM_THRESHOLD_=65536``). With distributed's default glibc returns every freed
#: megabyte-sized numpy temporary to the OS, so the next allocation page-faults afresh: the
#: diagnose pixel pass measured 1.13 ms/pair in a worker against 0.65 ms/pair in a plain process;
#: with these two settings 0.61-0.64. Freed memory kept per worker stays bounded (64 MiB).
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": 64 * 2**20, "MALLOC_TRIM_THRESHOLD_": 64 * 2**20}


def local_cluster(**kwargs):
    """A ``distributed.LocalCluster`` whose worker processes get :data:`WORKER_MALLOC_ENV`."""
    import dask
    from distributed import LocalCluster

    env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC_ENV.items()}
    with dask.config.set(env):
        return LocalCluster(**kwargs)


def add_cluster_arguments(parser) -> None:
    """Add ``--scheduler/--cluster/--workers/--threads-per-worker/--memory-limit`` and the
    storage flags ``--endpoint-url/--profile/--anon`` to a command's parser."""
    g = parser.add_argument_group("cluster")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="connect to an existing Dask scheduler (e.g. tcp://10.0.0.5:8786); overrides --cluster")
    g.add_argument("--cluster", choices=("local", "k8s", "none"),
                   help="local: start a LocalCluster (default); k8s: a dask-kubernetes KubeCluster; "
                        "none: run synchronously in this process")
    g.add_argument("--workers", type=int, help="number of workers (local/k8s); 0 = synchronous in this process")
    g.add_argument("--threads-per-worker", type=int, help="threads per worker (default 1: the kernel is numpy)")
    g.add_argument("--memory-limit", help="memory limit per worker, e.g. 4GiB")
    from .storage import add_storage_arguments

    add_storage_arguments(parser)


def _section_from_args(args, cfg) -> Any:
    from dataclasses import replace

    sec = cfg.cluster
    over: dict[str, Any] = {}
    if getattr(args, "scheduler", None):
        over["address"] = args.scheduler
    if getattr(args, "cluster", None):
        over["kind"] = args.cluster
    workers = getattr(args, "workers", None)
    if workers is not None:
        if workers < 0:
            raise ClusterError(f"--workers = {workers}: allowed >= 0 (0 = synchronous)")
        if workers == 0:
            over["kind"] = "none"
        else:
            over["workers"] = workers
    if getattr(args, "threads_per_worker", None) is not None:
        if args.threads_per_worker < 1:
            raise ClusterError(f"--threads-per-worker = {args.threads_per_worker}: allowed >= 1")
        over["threads_per_worker"] = args.threads_per_worker
    if getattr(args, "memory_limit", None):
        over["memory_limit"] = args.memory_limit
    return replace(sec, **over)


@contextmanager
def client_from_args(args, cfg) -> Iterator[Any]:
    """Context manager yielding a Client (or None for synchronous runs) for a command."""
    with get_client(_section_from_args(args, cfg)) as client:
        yield client


@contextmanager
def get_client(section, *, quiet: bool = False) -> Iterator[Any]:
    """Context manager yielding a ``distributed.Client`` for a ``[cluster]`` section, or ``None``.

    Parameters
    ----------
    section
        :class:`lensarray.config.ClusterSection`: ``address`` (connect), else ``kind`` local /
        k8s / none, ``workers``, ``threads_per_worker``, ``memory_limit``.
    quiet
        Do not print the dashboard link.
    """
    from distributed import Client

    if section.address:
        try:
            client = Client(section.address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach scheduler {section.address}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
        try:
            _announce(client, quiet)
            yield client
        finally:
            client.close()
        return
    if section.kind == "none":
        yield None
        return
    if section.kind == "k8s":
        try:
            from dask_kubernetes.operator import KubeCluster
        except ImportError:
            raise ClusterError("--cluster k8s needs dask-kubernetes: pip install 'lensarray[k8s]'") from None
        try:
            cluster = KubeCluster(name="lensarray", n_workers=section.workers)
        except Exception as exc:  # no kube config, no operator, ...
            raise ClusterError(f"cannot start a KubeCluster: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    else:
        cluster = local_cluster(n_workers=section.workers, threads_per_worker=section.threads_per_worker,
                                memory_limit=section.memory_limit, processes=True,
                                dashboard_address=":0" if _has_bokeh() else None)
    try:
        with Client(cluster) as client:
            _announce(client, quiet)
            yield client
    finally:
        cluster.close()


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def _announce(client, quiet: bool) -> None:
    if quiet:
        return
    n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    link = client.dashboard_link if _has_bokeh() else "(install bokeh>=3.1 for the dashboard)"
    print(f"dask: {n} workers, dashboard {link}", file=sys.stderr)
