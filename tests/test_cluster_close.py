"""A slow shutdown of a cluster lensarray started must not fail work that is already done."""

import logging

import pytest

from lensarray.cluster import _close_cluster


class _SlowCluster:
    def __init__(self, exc):
        self.exc = exc

    def close(self):
        raise self.exc


def test_a_cluster_shutdown_timeout_is_logged_not_raised(caplog):
    msg = "2/2 nanny worker(s) did not shut down within 120s"
    with caplog.at_level(logging.WARNING, logger="lensarray.cluster"):
        _close_cluster(_SlowCluster(TimeoutError(msg)))
    assert msg in caplog.text and "results are not affected" in caplog.text


def test_a_programming_error_in_close_is_not_swallowed():
    with pytest.raises(AttributeError):
        _close_cluster(_SlowCluster(AttributeError("bug")))
