"""Real stores for the cache tests: redis-server processes we can kill, pause and restart.

Faults are caused for real (style.md habit 9): ``kill()`` is SIGKILL (connections
reset, port refused), ``pause()`` is SIGSTOP (the kernel still accepts, nobody
answers: timeouts). Aerospike runs only against a server named by
``MLY_TEST_AEROSPIKE=host:port`` (none on this machine), through the same test
bodies as Redis via the ``store_kind`` parameter.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mly.cache.base import AsyncStore
from mly.config.schema import Connection, Timeout

REDIS_BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"
AEROSPIKE_ENV = "MLY_TEST_AEROSPIKE"
AEROSPIKE_NAMESPACE = os.environ.get("MLY_TEST_AEROSPIKE_NAMESPACE", "test")
TEST_TIMEOUT_MS = 250


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server child process on a fixed loopback port, kept across restarts."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.paused = False
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 5.0) -> None:
        import redis

        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited"
            try:
                with redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2) as r:
                    if r.ping():
                        return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: open connections reset, new ones refused."""
        if self.proc is not None:
            if self.paused:
                self.resume()
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Start again on the same port (empty: nothing is persisted)."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connects still succeed (kernel backlog) but nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def ensure_up(self) -> None:
        if self.paused:
            self.resume()
        if not self.running:
            self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=2)

    def flush(self) -> None:
        with self.client() as r:
            r.flushall()

    def connection(self, timeout_ms: int = TEST_TIMEOUT_MS) -> Connection:
        return Connection(
            id=self.name, hostnames="127.0.0.1", port=self.port, kind="redis",
            timeout=Timeout(connection=timeout_ms, socket=timeout_ms, total=timeout_ms),
        )


@pytest.fixture(scope="session")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RedisServer]]:
    """Two real redis-servers, ``l1`` and ``l2``, for the whole session."""
    if not os.access(REDIS_BINARY, os.X_OK):
        pytest.skip(f"redis-server not found at {REDIS_BINARY} (apt-get install -y redis-server)")
    servers = {name: RedisServer(name, tmp_path_factory.mktemp(f"redis-{name}")) for name in ("l1", "l2")}
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.kill()


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
