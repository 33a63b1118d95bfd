"""Dask worker plugins lensarray registers on the clusters it starts (imports distributed, so
kept out of :mod:`lensarray.cluster`, which every command imports for its flags)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin


class CloseS3Sessions(WorkerPlugin):
    """Close the worker's S3 sessions when it shuts down (else every worker that wrote to S3
    printed "Unclosed client session" at the end of a build)."""

    name = "lensarray-close-s3-sessions"

    def teardown(self, worker) -> None:
        from .storage import close_s3_sessions

        close_s3_sessions()
