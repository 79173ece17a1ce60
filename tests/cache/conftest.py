"""Real stores for the cache tests (the redis-server processes come from tests/conftest.py).

Faults are caused for real (style.md habit 9): ``kill()`` is SIGKILL (connections
reset, port refused), ``pause()`` is SIGSTOP (the kernel still accepts, nobody
answers: timeouts). Aerospike runs only against a server named by
``MLY_TEST_AEROSPIKE=host:port`` (none on this machine), through the same test
bodies as Redis via the ``store_kind`` parameter.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest
from redis_server import TEST_TIMEOUT_MS, RedisServer, free_port

from mly.cache.base import AsyncStore
from mly.config.schema import Connection, Timeout

AEROSPIKE_ENV = "MLY_TEST_AEROSPIKE"
AEROSPIKE_NAMESPACE = os.environ.get("MLY_TEST_AEROSPIKE_NAMESPACE", "test")


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


def aerospike_connection() -> Connection:
    host, _, port = os.environ[AEROSPIKE_ENV].rpartition(":")
    return Connection(id="aero", hostnames=host, port=int(port), kind="aerospike",
                      timeout=Timeout(connection=1000, socket=TEST_TIMEOUT_MS, total=TEST_TIMEOUT_MS))


@pytest.fixture(params=["redis", "aerospike"])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind = str(request.param)
    if kind == "aerospike":
        pytest.importorskip("aerospike", reason="pip install 'mly[aerospike]'")
        if not os.environ.get(AEROSPIKE_ENV):
            pytest.skip(f"no Aerospike server: set {AEROSPIKE_ENV}=host:port to run the Aerospike variant")
    return kind


MakeStore = Callable[..., AsyncStore]


@pytest.fixture
def make_store(store_kind: str, request: pytest.FixtureRequest) -> MakeStore:
    """``make_store(tier="l1", ttl_ms=..., read_only=...)`` for the parametrised store kind.

    Redis tiers are separate servers; Aerospike tiers are separate sets, unique
    per test so runs never see each other's records.
    """
    if store_kind == "redis":
        servers: dict[str, RedisServer] = request.getfixturevalue("redis")

        def make_redis(tier: str = "l1", *, ttl_ms: int = 60_000, read_only: bool = False) -> AsyncStore:
            return redis_store(servers[tier], ttl_ms=ttl_ms, read_only=read_only)

        return make_redis

    from mly.cache.aerospike import AerospikeStore

    run = uuid.uuid4().hex[:8]

    def make_aerospike(tier: str = "l1", *, ttl_ms: int = 60_000, read_only: bool = False) -> AsyncStore:
        return AerospikeStore.from_connection(
            aerospike_connection(), namespace=AEROSPIKE_NAMESPACE, dataset=f"mly_{tier}_{run}",
            ttl_ms=ttl_ms, read_only=read_only, name=f"aerospike:{tier}",
        )

    return make_aerospike
