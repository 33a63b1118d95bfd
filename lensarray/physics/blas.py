"""One BLAS thread for the renderer's matrix products, so a stamp's pixels do not depend on the host.

OpenBLAS's float32 GEMM gives results that differ in the last bits with its thread count (seen on
AMD EPYC with the Haswell kernels numpy's wheels select there: 28 % of arc pixels moved by up to
8e-5 relative between 1 and 2 threads). Dask's workers run with one BLAS thread (``distributed``
sets ``OMP_NUM_THREADS=1`` and friends for nanny workers) while a notebook, a synchronous build
or the threaded scheduler use all cores, so without this a lazy cube computed in a notebook and
the cube a cluster wrote would not be bit-identical. The renderer's products are small (one stamp
per call) and gain nothing from BLAS threads.

OpenBLAS's thread count is process-wide: it cannot be limited for one call from one thread
without racing other threads that restore it, so it is set to 1 and left there (logged at debug level). And
OpenBLAS (0.3.34 here) ignores the setting from any thread but the main one, so the pin is made
where graphs are built, in the caller's thread (:func:`lensarray.lazy_cube`, ``build``), and
again in the kernel (which runs in the main thread of a synchronous build); a kernel that runs in
a pool thread while BLAS has been given more threads since logs a warning.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_blas: list | None = None  # threadpoolctl library controllers of the BLAS libraries numpy loaded
_warned = False


def single_threaded_blas() -> None:
    """Set every loaded BLAS library to one thread if it is not already (a few ctypes calls)."""
    global _blas, _warned
    if _blas is None:
        with _lock:
            if _blas is None:
                from threadpoolctl import ThreadpoolController

                _blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    for lib in _blas:
        was = lib.num_threads
        if was == 1:
            continue
        lib.set_num_threads(1)
        if lib.num_threads == 1:
            log.debug(
                "lensarray: %s set to 1 thread (was %d) so that rendered pixels do not depend on the thread count",
                lib.internal_api,
                was,
            )
        elif not _warned:
            _warned = True
            log.warning(
                "lensarray: %s keeps %d threads (it takes a thread count only from the main thread): "
                "rendered pixels may differ in the last bits from a cluster build; set "
                "OPENBLAS_NUM_THREADS=1 or call threadpoolctl.threadpool_limits(1) in the main thread",
                lib.internal_api,
                lib.num_threads,
            )
