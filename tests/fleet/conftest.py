"""Fixtures shared by the fleet tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aerospike_server import unavailable_reason
from required import missing


@pytest.fixture
def aerospike_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh 3-node Aerospike cluster (replication 2) on loopback for one test: the tests kill nodes."""
    reason = unavailable_reason()
    if reason is not None:
        missing(reason)
    from aerospike_cluster import AerospikeCluster

    cluster = AerospikeCluster(tmp_path_factory.mktemp("aerospike-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
