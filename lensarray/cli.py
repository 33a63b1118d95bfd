"""``lensarray`` command line: one sub-command per module in :mod:`lensarray.commands`.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status), so commands stay small and independent.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from . import __version__

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("build", "inspect", "preview", "verify", "diagnose", "experiment", "ingest", "evaluate", "study")


def make_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by tests to parse deploy/ command lines)."""
    parser = argparse.ArgumentParser(
        prog="lensarray",
        description="Build, inspect and audit paired lens/control training cubes for strong-lens finders.",
    )
    parser.add_argument("--version", action="version", version=f"lensarray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            mod = import_module(f"lensarray.commands.{name}")
        except ModuleNotFoundError as exc:  # a command under development
            if exc.name != f"lensarray.commands.{name}":
                raise
            continue
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lensarray`` console script."""
    args = make_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
