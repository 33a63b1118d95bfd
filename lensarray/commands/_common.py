"""Shared helpers of the command modules: the one error printer and the cluster/storage flags.

Commands raise :class:`~lensarray.errors.BadInputError` (or a subclass) for every refusal;
:func:`lensarray.cli.main` prints it with :func:`fail` and exits 2.
"""

from __future__ import annotations

import itertools
import sys

from ..errors import BadInputError

__all__ = [
    "fail",
    "BadInputError",
    "add_cluster_arguments",
    "add_storage_arguments",
    "client_from_args",
    "storage_options_from_args",
    "progress_enabled",
    "command_config",
    "open_cube_from_args",
    "one_line",
]


def one_line(message: object) -> str:
    """A message on one line (multi-line configuration errors are joined with `` | ``)."""
    text = str(message).strip()
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    parts = [part.strip() for part in text.splitlines() if part.strip()]
    out = parts[0] if parts else ""
    for prev, part in itertools.pairwise(parts):  # "invalid configuration:" + "a = 1: ..." reads as one
        out += (" " if prev.endswith(":") else " | ") + part
    return out


def fail(message: object, status: int = 2) -> int:
    """Print ``lensarray: error: <message>`` as one line to stderr and return ``status``."""
    print(f"lensarray: error: {one_line(message)}", file=sys.stderr)
    return status


def add_cluster_arguments(parser) -> None:
    """The cluster flags and the storage flags every command shares."""
    from ..cluster import add_cluster_arguments as add

    add(parser)


def add_storage_arguments(parser) -> None:
    """The storage flags alone (commands that start no cluster)."""
    from ..storage import add_storage_arguments as add

    add(parser)


def client_from_args(args, cfg=None):
    """Context manager: a distributed Client (or None for synchronous runs) for a command."""
    from ..cluster import client_from_args as make

    return make(args, cfg)


def storage_options_from_args(args, cfg=None) -> dict:
    """fsspec options from flags/config/environment (never stored in the cube)."""
    from ..storage import storage_options_from

    return storage_options_from(args, cfg)


def command_config(args, *, in_process: bool = True):
    """The RunConfig a reading command runs with: ``--config`` when the command has one, else the
    defaults. With ``in_process`` and no cluster flag or config, work runs in this process."""
    from ..config import load_config

    path = getattr(args, "config", None)
    cfg = load_config(path)
    asked = any(getattr(args, k, None) is not None for k in ("scheduler", "cluster", "workers"))
    if in_process and path is None and not asked:
        cfg = cfg.replace(**{"cluster.kind": "none"})
    return cfg


def open_cube_from_args(url: str, args, cfg=None, *, what: str = "STORE", allow_incomplete: bool = False):
    """Open a cube for a command: reachability is checked (time-bounded, one line) first; an
    incomplete cube is refused (:class:`~lensarray.errors.IncompleteCubeError`) unless
    ``allow_incomplete``."""
    from ..cube import open_cube
    from ..storage import check_source

    options = storage_options_from_args(args, cfg)
    check_source(url, options, what=what)
    return open_cube(url, storage_options=options, allow_incomplete=allow_incomplete)


def progress_enabled(args) -> bool:
    """Progress bars are the CLI's: on unless ``--no-progress`` or ``-q``."""
    return not (getattr(args, "no_progress", False) or getattr(args, "quiet", 0))
