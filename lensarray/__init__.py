"""lensarray: paired lens/control training sets for strong-lens finders, audited for shortcuts.

Public entry points (imported lazily so that ``import lensarray`` stays cheap):

- :func:`render_arcs` -- the physics kernel (numpy; no Dask inside)
- :func:`lazy_cube` -- the cube of a configuration as a lazy xarray Dataset (map_blocks)
- :func:`build` -- config -> lazy cube -> Zarr cube (``ds.lensarray.to_zarr`` is the writer)
- :func:`open_cube` -- open and validate a cube; ``ds.lensarray.stamps()`` is the lazy view
- :class:`RunConfig`, :func:`load_config` -- the validated run configuration
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "render_arcs": "lensarray.physics.render",
    "build": "lensarray.pipeline",
    "lazy_cube": "lensarray.pipeline",
    "open_cube": "lensarray.cube",
    "RunConfig": "lensarray.config",
    "load_config": "lensarray.config",
    "ConfigError": "lensarray.config",
    "CubeSchemaError": "lensarray.cube",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lensarray' has no attribute {name!r}")
