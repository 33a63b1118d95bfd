"""One exception family for the whole package.

Every error lensarray raises on purpose derives from :class:`LensArrayError`, so a caller (the
CLI, a notebook, a pipeline framework) can tell "lensarray refused this" from a bug. The CLI maps
:class:`BadInputError` to exit status 2 (one line, nothing written); any other exception that is
not a ``LensArrayError`` is a bug and keeps its traceback.

The specific classes live beside the code that raises them (``ConfigError`` in
:mod:`lensarray.config`, ``CubeSchemaError`` in :mod:`lensarray.cube`, ...) and derive from these.
"""

from __future__ import annotations

__all__ = [
    "LensArrayError",
    "BadInputError",
    "IncompleteCubeError",
    "StoreLockedError",
    "GateFailure",
]


class LensArrayError(Exception):
    """Base class of every error lensarray raises deliberately; the message is one line."""


class BadInputError(LensArrayError, ValueError):
    """The user's input (configuration, flag, file, store) is not acceptable (CLI exit 2)."""


class IncompleteCubeError(BadInputError):
    """A cube has shards that were never written (or fail verification); it is not served."""


class StoreLockedError(BadInputError):
    """Another writer holds the store's lock."""


class GateFailure(LensArrayError):
    """A diagnostic gate failed (CLI exit 1)."""
