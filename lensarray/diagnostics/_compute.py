"""Run per-chunk tasks with a progress bar, with or without a distributed Client; read whole stored
arrays in this process; peak memory."""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["compute_tasks", "current_client", "peak_memory", "store_source"]


def current_client():
    """The active ``distributed.Client`` or ``None`` (threads scheduler then)."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def compute_tasks(
    tasks: Sequence[Any], *, desc: str, progress: bool = False, sink: Callable[[int, Any], None] | None = None
) -> list:
    """Compute dask ``Delayed`` tasks, results in input order, with a tqdm bar.

    Under a distributed Client ``dask.diagnostics`` callbacks see nothing, so futures are
    followed with ``as_completed``; otherwise tqdm's dask callback follows the local scheduler.
    With ``sink``, each result is handed to ``sink(index, result)`` as it arrives and not kept
    (the returned list holds None): the caller stores it once, where it belongs.
    """
    import dask
    from tqdm.auto import tqdm

    tasks = list(tasks)
    if not tasks:
        return []
    client = current_client()
    if client is not None:
        from distributed import as_completed

        futures = client.compute(tasks)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list = [None] * len(futures)
        with tqdm(total=len(futures), desc=desc, disable=not progress, file=sys.stderr) as bar:
            for fut in as_completed(futures):
                i = index[fut.key]
                if sink is None:
                    out[i] = fut.result()
                else:
                    sink(i, fut.result())
                fut.release()
                bar.update(1)
        return out
    from contextlib import nullcontext

    from tqdm.dask import TqdmCallback

    bar = TqdmCallback(desc=desc, file=sys.stderr) if progress else nullcontext()
    if sink is None:
        with bar:
            return list(dask.compute(*tasks, scheduler="threads"))
    # bounded batches so that the local scheduler never holds every chunk's result at once
    step = 8 * (os.cpu_count() or 1)
    with bar:
        for a in range(0, len(tasks), step):
            for i, res in enumerate(dask.compute(*tasks[a : a + step], scheduler="threads"), start=a):
                sink(i, res)
    return [None] * len(tasks)


def store_source(data: Any) -> Any | None:
    """The backend array under ``data`` when ``data`` is a plain chunked read of one whole stored
    array, else ``None``.

    That is the graph :func:`xarray.open_zarr` makes: one ``original-*`` layer holding the lazily
    indexed (decoded) backend array and one blockwise ``getter`` layer slicing it into chunks.
    ``numpy.asarray`` of the returned object then equals ``data.compute()`` exactly (the getter
    only slices it), in one zarr call that fetches every chunk concurrently instead of one call
    per chunk. Anything else (a selection, arithmetic, a lazy render, in-memory data) gives
    ``None``: the caller reads it through dask as before.
    """
    dsk = getattr(data, "dask", None)
    if dsk is None or not hasattr(dsk, "layers"):
        return None
    layers = dict(dsk.layers)
    if len(layers) != 2 or data.name not in layers:
        return None
    (orig,) = (k for k in layers if k != data.name)
    if not str(orig).startswith("original-") or len(layers[orig]) != 1:
        return None
    src = next(iter(layers[orig].values()))
    if tuple(getattr(src, "shape", ())) != tuple(data.shape) or getattr(src, "dtype", None) != data.dtype:
        return None
    return src


def peak_memory() -> dict:
    """Peak resident memory (ru_maxrss, MiB) of this process and, under a Client, of each worker."""

    def _self_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB

    out: dict = {"process_peak_rss_mib": round(_self_mib(), 1)}
    client = current_client()
    if client is not None:
        try:
            per = client.run(_self_mib)
            out["worker_peak_rss_mib"] = {k: round(v, 1) for k, v in per.items()}
        except Exception as exc:  # a worker gone does not void the report
            out["worker_peak_rss_error"] = str(exc)
    return out
