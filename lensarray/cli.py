"""``lensarray`` command line: one sub-command per module in :mod:`lensarray.commands`.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status), so commands stay small and independent.

Errors are mapped to exit codes here and only here: a :class:`~lensarray.errors.BadInputError`
(every refusal of the user's input) prints one line and exits 2, a
:class:`~lensarray.errors.GateFailure` exits 1, anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from importlib import import_module

from .cluster import client_numpy_env

client_numpy_env()  # before anything imports numpy: the command's process runs as its workers

from . import __version__  # noqa: E402
from .errors import BadInputError, GateFailure  # noqa: E402

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = (
    "build",
    "inspect",
    "preview",
    "verify",
    "diagnose",
    "experiment",
    "ingest",
    "evaluate",
    "plan",
    "config",
    "study",
)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in each command's description as written and shows every default
    (flags whose default is "unset" -- None, off, 0 counts -- say in their help where the value
    comes from instead)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or (isinstance(action, argparse._CountAction) and action.default == 0):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse's own refusals (a missing flag, ``--pairs abc``) as the one-line bad input of every
    other refusal, exit 2, instead of a usage block followed by the error."""

    def error(self, message: str):
        from .commands._common import fail

        sys.exit(fail(f"{message} (see `{self.prog} --help`)"))


def make_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by tests to parse deploy/ command lines)."""
    parser = _Parser(
        prog="lensarray",
        description="Build, inspect and audit paired lens/control training cubes for strong-lens finders.",
    )
    parser.add_argument("--version", action="version", version=f"lensarray {__version__}")
    verbosity = _Parser(add_help=False)
    g = verbosity.add_argument_group("output")
    g.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log messages (-v info, -vv debug, also from dask)"
    )
    g.add_argument(
        "-q", "--quiet", action="count", default=0, help="fewer messages: -q warnings and errors only, no progress bars"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        mod = import_module(f"lensarray.commands.{name}")
        p = sub.add_parser(
            mod.NAME, help=mod.HELP, description=mod.__doc__, parents=[verbosity], formatter_class=_HelpFormatter
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (a notebook or test harness may replace
    and close the stream the handler saw when it was made)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbose: int = 0, quiet: int = 0) -> None:
    """Route library log records to stderr: lensarray at INFO by default (WARNING with ``-q``,
    DEBUG with ``-v``); third-party loggers (dask, distributed) at WARNING unless ``-vv``."""
    level = logging.INFO - 10 * verbose + 10 * quiet
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s" if verbose == 0 else "%(levelname)s %(name)s: %(message)s"))
    pkg = logging.getLogger("lensarray")
    pkg.handlers[:] = [handler]
    pkg.setLevel(max(logging.DEBUG, level))
    pkg.propagate = False
    for name in ("distributed", "dask"):
        logging.getLogger(name).setLevel(
            logging.DEBUG if verbose >= 2 else logging.WARNING if quiet == 0 else logging.ERROR
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lensarray`` console script."""
    from .commands._common import fail

    parser = make_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    if args.quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    try:
        return int(args._run(args) or 0)
    except BadInputError as exc:
        return fail(exc)
    except GateFailure as exc:
        return fail(exc, status=1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lensarray inspect ... | head`: the reader left, not an error
        sys.stderr.close()
        return 141
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise  # any other OSError here is a bug, not a refusal: keep its traceback
        return fail(_no_space_message(args, exc))
    finally:
        _close_filesystems()


#: errno values of a full disk, quota or file-size limit: the user's environment, not a bug.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _no_space_message(args, exc: OSError) -> str:
    where = f" writing {exc.filename}" if exc.filename else ""
    text = f"{exc.strerror or 'no space left'}{where}"
    if getattr(args, "command", "") == "build":
        return (
            f"{text}; the shards written so far are kept: free space, then finish with "
            f"`lensarray build --resume --out {args.out}` (same options)"
        )
    return f"{text}; free space and run the command again (nothing was replaced)"


def _close_filesystems() -> None:
    """Close the S3 sessions a command opened (see :func:`lensarray.storage.close_s3_sessions`)."""
    if "s3fs" in sys.modules:
        from .storage import close_s3_sessions

        close_s3_sessions()


if __name__ == "__main__":
    sys.exit(main())
