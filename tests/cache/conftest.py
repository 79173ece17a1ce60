"""Real stores for the cache tests.

The redis-server processes come from tests/conftest.py; Aerospike servers from
tests/aerospike_server.py (started by this session from the server bundle, or
named by ``MLY_TEST_AEROSPIKE=host:port``). Faults are caused for real:
``kill()`` is SIGKILL (connections reset, port refused), ``pause()`` is SIGSTOP
(the kernel still accepts, nobody answers: timeouts). Behaviours common to both
stores run through the same test bodies via the ``store_kind`` parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aerospike_server import NAMESPACE as AEROSPIKE_NAMESPACE
from aerospike_server import AerospikeServer, aerospike_l1, aerospike_l2, wait_stopped
from redis_server import TEST_TIMEOUT_MS, RedisServer, free_port

from mly.cache.base import AsyncStore

__all__ = ["aerospike_l1", "aerospike_l2"]  # session fixtures, re-exported for this folder


@pytest.fixture
def redis(redis_servers: dict[str, RedisServer]) -> dict[str, RedisServer]:
    """The session's servers, running, unpaused and empty for this test."""
    for server in redis_servers.values():
        server.ensure_up()
        server.flush()
    return redis_servers


def redis_store(server: RedisServer, *, ttl_ms: int = 60_000, read_only: bool = False,
                namespace: str = "ns", dataset: str = "ds", timeout_ms: int = TEST_TIMEOUT_MS) -> AsyncStore:
    from mly.cache.redis import RedisStore

    return RedisStore.from_connection(
        server.connection(timeout_ms), namespace=namespace, dataset=dataset, ttl_ms=ttl_ms,
        read_only=read_only, name=f"redis:{server.name}",
    )


@pytest.fixture
def new_redis_store() -> Callable[..., AsyncStore]:
    """``new_redis_store(server, ttl_ms=..., read_only=..., namespace=..., dataset=...)``."""
    return redis_store


@pytest.fixture
def unused_port() -> Callable[[], int]:
    return free_port


def aerospike_store(server: AerospikeServer, *, dataset: str, ttl_ms: int = 60_000, read_only: bool = False,
                    timeout_ms: int = TEST_TIMEOUT_MS, name: str = "") -> AsyncStore:
    from mly.cache.aerospike import AerospikeStore

    return AerospikeStore.from_connection(
        server.connection(timeout_ms), namespace=AEROSPIKE_NAMESPACE, dataset=dataset, ttl_ms=ttl_ms,
        read_only=read_only, name=name or f"aerospike:{server.name}",
    )


@pytest.fixture(params=["redis", "aerospike"])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind = str(request.param)
    if kind == "aerospike":
        server: AerospikeServer = request.getfixturevalue("aerospike_l1")
        server.ensure_up()
    return kind


MakeStore = Callable[..., AsyncStore]


@pytest.fixture
def make_store(store_kind: str, request: pytest.FixtureRequest) -> MakeStore:
    """``make_store(tier="l1", ttl_ms=..., read_only=...)`` for the parametrised store kind.

    Redis tiers are separate servers; Aerospike tiers are separate sets on one
    server, unique per test so runs never see each other's records.
    """
    if store_kind == "redis":
        servers: dict[str, RedisServer] = request.getfixturevalue("redis")

        def make_redis(tier: str = "l1", *, ttl_ms: int = 60_000, read_only: bool = False) -> AsyncStore:
            return redis_store(servers[tier], ttl_ms=ttl_ms, read_only=read_only)

        return make_redis

    server: AerospikeServer = request.getfixturevalue("aerospike_l1")
    run = uuid.uuid4().hex[:8]

    def make_aerospike(tier: str = "l1", *, ttl_ms: int = 60_000, read_only: bool = False) -> AsyncStore:
        return aerospike_store(server, dataset=f"mly_{tier}_{run}", ttl_ms=ttl_ms, read_only=read_only,
                               name=f"aerospike:{tier}")

    return make_aerospike


@dataclass
class FaultyStore:
    """A real server that a test may kill, pause and restart, and stores on it."""

    kind: str
    server: Any  # RedisServer | AerospikeServer: the same kill/pause/resume/restart/ensure_up interface
    make: Callable[..., AsyncStore]
    """``make(timeout_ms=...)``: a new store on ``server`` (same set/prefix every time)."""

    def __post_init__(self) -> None:
        if isinstance(self.server, RedisServer):
            self.server = _StoppedRedis(self.server)


class _StoppedRedis:
    """A ``RedisServer`` whose ``pause()`` returns only once the process is stopped."""

    def __init__(self, server: RedisServer) -> None:
        self._server = server

    def pause(self) -> None:
        self._server.pause()
        assert self._server.proc is not None
        wait_stopped(self._server.proc.pid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


@pytest.fixture
def faulty_store(store_kind: str, request: pytest.FixtureRequest) -> FaultyStore:
    """The L1 server of ``store_kind``, running and empty, with a store factory for it."""
    if store_kind == "redis":
        server = request.getfixturevalue("redis")["l1"]

        def make_redis(timeout_ms: int = TEST_TIMEOUT_MS) -> AsyncStore:
            return redis_store(server, timeout_ms=timeout_ms)

        return FaultyStore("redis", server, make_redis)
    aero: AerospikeServer = request.getfixturevalue("aerospike_l1")
    aero.ensure_up()
    dataset = f"mly_fault_{uuid.uuid4().hex[:8]}"

    def make_aerospike(timeout_ms: int = TEST_TIMEOUT_MS) -> AsyncStore:
        return aerospike_store(aero, dataset=dataset, timeout_ms=timeout_ms)

    return FaultyStore("aerospike", aero, make_aerospike)
