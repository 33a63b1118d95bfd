"""Helpers for tests and benchmarks: where the shared real data lives."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_data"]


def shared_data() -> Path | None:
    """Path of the shared third-party data folder (``../shared/data``), or ``None``.

    ``LENSARRAY_SHARED_DATA`` overrides the search; otherwise the folder is looked for beside
    the repository checkout and beside the current directory.
    """
    env = os.environ.get("LENSARRAY_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None
