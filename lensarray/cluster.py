"""Where work runs: a LocalCluster (default), an existing scheduler, or dask-kubernetes.

The pipeline and diagnostics take a ``distributed.Client`` or ``None`` (synchronous, in-process);
this module turns CLI flags / the ``[cluster]`` configuration into one and closes what it
started.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import BadInputError

__all__ = [
    "ClusterError",
    "add_cluster_arguments",
    "client_from_args",
    "cluster_section",
    "get_client",
    "make_cluster_spec",
    "check_address",
    "check_memory_limit",
]

logger = logging.getLogger(__name__)


class ClusterError(BadInputError, RuntimeError):
    """A cluster could not be started or reached; the message is one line."""


#: Environment of local worker processes (set through the nanny, which otherwise sets
#: ``MALLOC_TRIM_THRESHOLD_=65536``). With distributed's default glibc returns every freed
#: megabyte-sized numpy temporary to the OS, so the next allocation page-faults afresh: the
#: diagnose pixel pass measured 1.13 ms/pair in a worker against 0.65 ms/pair in a plain process;
#: with these two settings 0.61-0.64. Freed memory kept per worker stays bounded (64 MiB).
#: ``NUMPY_MADVISE_HUGEPAGE=0``: numpy otherwise madvises transparent huge pages for every array
#: of >= 4 MiB, and with the kernel's THP defrag "madvise" each fresh buffer's fault may compact
#: memory synchronously: a shard of 256 pairs spent 0.32-0.40 ms/pair in the kernel (sys time)
#: with it, 0.09-0.15 without it (benchmarks/README.md, build stages), user time unchanged.
WORKER_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": 64 * 2**20,
    "MALLOC_TRIM_THRESHOLD_": 64 * 2**20,
    "NUMPY_MADVISE_HUGEPAGE": 0,
}


def client_numpy_env() -> None:
    """Give this process the numpy setting its workers get (``NUMPY_MADVISE_HUGEPAGE`` of
    :data:`WORKER_MALLOC_ENV`) unless the user set it. numpy reads it once, at import: call
    this before numpy is imported (the ``lensarray`` command does, first thing). The client and
    a LocalCluster's scheduler fill fresh large arrays too: diagnose's first core LR at 20,000
    pairs took 1.43-1.60 s with numpy's huge-page advice, 0.87-0.94 s without (numpy issue
    31590). The malloc settings are read by glibc at process start, too late to set here."""
    import os

    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", str(WORKER_MALLOC_ENV["NUMPY_MADVISE_HUGEPAGE"]))


def zarr_threads_env(threads_per_worker: int | None) -> dict[str, int]:
    """Environment giving zarr's codec thread pool a worker's own thread count (empty when that is
    not known). zarr decodes and stores chunks in a pool of one thread per core by default, so two
    single-threaded workers on two cores ran four decoding threads beside their task threads:
    diagnose's workers spent 0.67-0.71 CPU ms a pair on the pixel pass with it, 0.55-0.57 with
    one zarr thread each (10k pairs, alternating runs), as distributed gives BLAS one thread. The
    same count bounds the decoding pool of zarr's ``FusedCodecPipeline``, with which
    :func:`lensarray.store.open_dataset` opens cubes."""
    if threads_per_worker is None:
        return {}
    return {
        "ZARR_THREADING__MAX_WORKERS": int(threads_per_worker),
        "ZARR_CODEC_PIPELINE__MAX_WORKERS": int(threads_per_worker),
    }


def local_cluster(**kwargs):
    """A ``distributed.LocalCluster`` whose worker processes get :data:`WORKER_MALLOC_ENV` and, when
    ``threads_per_worker`` is given, :func:`zarr_threads_env`."""
    import dask
    from distributed import LocalCluster

    environ = {**WORKER_MALLOC_ENV, **zarr_threads_env(kwargs.get("threads_per_worker"))}
    env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in environ.items()}
    with dask.config.set(env):
        return LocalCluster(**kwargs)


def add_cluster_arguments(parser) -> None:
    """Add the cluster flags every command shares (``--scheduler/--cluster/--workers/
    --threads-per-worker/--memory-limit/--dashboard``) and the storage flags
    ``--endpoint-url/--profile/--anon`` to a command's parser."""
    g = parser.add_argument_group("cluster (default: the [cluster] configuration: a local cluster of 2 workers)")
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="connect to an existing Dask scheduler (e.g. tcp://10.0.0.5:8786); overrides --cluster",
    )
    g.add_argument(
        "--cluster",
        choices=("local", "k8s", "none"),
        help="local: start a LocalCluster; k8s: a dask-kubernetes KubeCluster (spec from [cluster]); "
        "none: run synchronously in this process",
    )
    g.add_argument(
        "--workers",
        type=int,
        help="number of workers (local/k8s); 0 = synchronous in this process (default: cluster.workers = 2)",
    )
    g.add_argument(
        "--threads-per-worker",
        type=int,
        help="threads per worker (default: cluster.threads_per_worker = 1; the kernel is numpy)",
    )
    g.add_argument(
        "--memory-limit", help="memory limit per worker, 64MiB-1PiB or 'auto' (default: cluster.memory_limit = 4GiB)"
    )
    g.add_argument("--dashboard", action="store_true", help="serve the Dask dashboard of a local cluster")
    from .storage import add_storage_arguments

    add_storage_arguments(parser)


_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def check_address(address: str, field: str = "cluster.address") -> str:
    """``address`` if it is a scheduler address ``[tcp|tls|ws|wss://]host:port``, else :class:`ClusterError`."""
    m = _ADDRESS.match(address.strip())
    if not m or not 1 <= int(m.group(3)) <= 65535:
        raise ClusterError(f"{field} = {address!r}: allowed a scheduler address tcp://HOST:PORT (port 1-65535)")
    return address.strip()


def check_memory_limit(value, field: str = "cluster.memory_limit") -> str:
    """``value`` if dask accepts it as a per-worker memory limit ("4GiB", "500MB", "auto"), else
    :class:`ClusterError` (checked here because LocalCluster only fails inside a worker)."""
    from dask.utils import parse_bytes

    text = str(value).strip()
    if text == "auto":
        return text
    try:
        n = parse_bytes(text)
    except (ValueError, TypeError):
        n = -1
    if not 2**26 <= n <= 2**50:
        raise ClusterError(f"{field} = {value!r}: allowed 'auto' or a size from 64MiB to 1PiB, e.g. '4GiB'")
    return text


def check_section(section) -> Any:
    """Validate a ``[cluster]`` section before anything starts (one-line :class:`ClusterError`)."""
    if section.address:
        check_address(section.address)
    elif section.kind != "none":
        check_memory_limit(section.memory_limit)
    return section


def _section_from_args(args, cfg) -> Any:
    from dataclasses import replace

    if cfg is None:
        from .config import RunConfig

        cfg = RunConfig()
    sec = cfg.cluster
    over: dict[str, Any] = {}
    if getattr(args, "scheduler", None) is not None:
        over["address"] = check_address(args.scheduler, "--scheduler")
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
    if getattr(args, "memory_limit", None) is not None:
        over["memory_limit"] = check_memory_limit(args.memory_limit, "--memory-limit")
    return check_section(replace(sec, **over))


@contextmanager
def client_from_args(args, cfg=None) -> Iterator[Any]:
    """Context manager yielding a Client (or None for synchronous runs) for a command.

    Every cluster setting is validated on entry, before anything starts; call
    :func:`cluster_section` first to validate before other (destination) checks.
    """
    with get_client(_section_from_args(args, cfg), dashboard=bool(getattr(args, "dashboard", False))) as client:
        yield client


def cluster_section(args, cfg=None) -> Any:
    """The validated ``[cluster]`` section these flags ask for (nothing is started)."""
    return _section_from_args(args, cfg)


def _bytes_to_k8s(limit: str) -> str:
    from dask.utils import parse_bytes

    return f"{parse_bytes(limit) // 2**20}Mi"


def make_cluster_spec(cfg) -> dict:
    """The ``DaskCluster`` resource (kubernetes.dask.org/v1) that ``--cluster k8s`` creates.

    Built from the ``[cluster]`` section: ``image`` for scheduler and workers, ``workers``
    replicas, ``threads_per_worker`` CPUs and ``memory_limit`` memory per worker (requests =
    limits, and the same limit given to ``dask worker`` so it spills before the kernel kills it),
    and the S3 credentials as environment variables taken from the Kubernetes Secret
    ``k8s_secret`` (keys ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), never their values.

    Parameters
    ----------
    cfg
        A :class:`lensarray.config.RunConfig` (or its ``cluster`` section).
    """
    from dask_kubernetes.operator import make_cluster_spec as kube_spec

    sec = getattr(cfg, "cluster", cfg)
    check_memory_limit(sec.memory_limit)
    memory = _bytes_to_k8s(sec.memory_limit) if sec.memory_limit != "auto" else None
    resources = {"requests": {"cpu": str(sec.threads_per_worker)}, "limits": {"cpu": str(sec.threads_per_worker)}}
    if memory:
        resources["requests"]["memory"] = resources["limits"]["memory"] = memory
    environ = {**WORKER_MALLOC_ENV, **zarr_threads_env(sec.threads_per_worker)}
    env: list[dict] = [{"name": k, "value": str(v)} for k, v in environ.items()]
    if sec.k8s_secret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": sec.k8s_secret, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    command = f"dask worker --nthreads {sec.threads_per_worker} --memory-limit {sec.memory_limit}"
    return kube_spec(
        name=sec.k8s_name, image=sec.image, n_workers=sec.workers, resources=resources, env=env, worker_command=command
    )


#: Seconds to wait for an existing scheduler before giving up (one line, not a 30 s hang).
CONNECT_TIMEOUT_S = 5


@contextmanager
def get_client(section, *, quiet: bool = False, dashboard: bool = False) -> Iterator[Any]:
    """Context manager yielding a ``distributed.Client`` for a ``[cluster]`` section, or ``None``.

    Parameters
    ----------
    section
        :class:`lensarray.config.ClusterSection`: ``address`` (connect), else ``kind`` local /
        k8s / none, ``workers``, ``threads_per_worker``, ``memory_limit``.
    quiet
        Do not log the cluster's size and dashboard link.
    dashboard
        Serve the dashboard of a local cluster (needs bokeh).
    """
    check_section(section)
    from distributed import Client

    if section.address:
        try:
            client = Client(section.address, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach scheduler {section.address} within {CONNECT_TIMEOUT_S} s ({type(exc).__name__})"
            ) from None
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
            cluster = KubeCluster(custom_cluster_spec=make_cluster_spec(section))
        except Exception as exc:  # no kube config, no operator, ...
            raise ClusterError(f"cannot start a KubeCluster: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    else:
        dashboard = dashboard and _has_bokeh()
        with warnings.catch_warnings():
            # without a dashboard the scheduler still serves /health on 8787 and warns when another
            # cluster holds that port; it then takes a free one, which is all we need
            warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
            cluster = local_cluster(
                n_workers=section.workers,
                threads_per_worker=section.threads_per_worker,
                memory_limit=section.memory_limit,
                processes=True,
                dashboard_address=":0" if dashboard else None,
            )
    try:
        with Client(cluster) as client:
            from ._worker_plugins import CloseS3Sessions

            client.register_plugin(CloseS3Sessions())
            _announce(client, quiet, dashboard or section.kind == "k8s")
            yield client
    finally:
        _stop_dashboard(cluster)
        _close_cluster(cluster)


def _close_cluster(cluster) -> None:
    """Close a cluster we started. The work is finished (or failed) by now, so a slow shutdown of
    the worker processes (a loaded machine can take longer than distributed's timeout) is logged,
    not raised: raising here would turn a complete build into a failed command, or hide the real
    error of a failed one. The nannies' processes are daemons and die with this process."""
    try:
        cluster.close()
    except (TimeoutError, OSError) as exc:
        logger.warning(
            "the local Dask cluster did not shut down cleanly (%s: %s); the results are not affected",
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )


async def _stop_bokeh(scheduler) -> None:
    http = getattr(scheduler, "http_application", None)
    if http is None:
        return
    for app in list(getattr(http, "applications", [])):
        if hasattr(app, "stop_async"):
            await app.stop_async()
            http.applications.remove(app)


def _stop_dashboard(cluster) -> None:
    """Stop a local cluster's bokeh dashboard on the cluster's loop before the scheduler closes:
    bokeh >= 3.10 refuses the synchronous ``stop()`` distributed calls from its running loop
    (dask/distributed#9350), which printed a traceback at the end of every build."""
    scheduler = getattr(cluster, "scheduler", None)
    if scheduler is None or not getattr(scheduler, "http_application", None):
        return
    try:
        cluster.sync(_stop_bokeh, scheduler)
    except Exception as exc:  # never let a dashboard stop hide the result of the work
        logger.debug("dashboard stop: %s", exc)


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def _announce(client, quiet: bool, dashboard: bool = True) -> None:
    if quiet:
        return
    n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    link = client.dashboard_link if dashboard else "off (--dashboard to serve it)"
    logger.info("dask: %d workers, dashboard %s", n, link)
