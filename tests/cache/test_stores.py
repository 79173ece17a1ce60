"""External stores against real servers: one body per behaviour, run for Redis and Aerospike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aerospike_server import NAMESPACE as AEROSPIKE_NAMESPACE

from mly.cache.base import AsyncStore, StoredRow, StoreUnavailableError

MakeStore = Callable[..., AsyncStore]
Servers = dict[str, Any]  # name -> conftest.RedisServer

ROW = {
    "int": -(2**62),
    "float": 0.125,
    "str": "naïve/ключ",
    "list": [1, 2.5, "x"],
    "nested": {"a": [1, {"b": 2}], "c": "d"},
    "bool": True,
}
HASH = -8_765_432_109_876_543_210 // 1000


@pytest.mark.asyncio
async def test_roundtrip_keeps_types_and_hash(make_store: MakeStore) -> None:
    store = make_store()
    try:
        await store.put_many([("k1", StoredRow(ROW, HASH)), ("k/2:x", StoredRow({"v": 1}, 0))])
        got = await store.get_many(["k1", "absent", "k/2:x"])
        assert got == [StoredRow(ROW, HASH), None, StoredRow({"v": 1}, 0)]
        assert await store.get_many([]) == []
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_rewrite_replaces_all_fields(make_store: MakeStore) -> None:
    store = make_store()
    try:
        await store.put_many([("k", StoredRow({"old": 1, "keep": 2}, 1))])
        await store.put_many([("k", StoredRow({"keep": 3}, 2))])
        assert await store.get_many(["k"]) == [StoredRow({"keep": 3}, 2)]
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_ttl_is_honoured(make_store: MakeStore, store_kind: str) -> None:
    # Aerospike TTLs are whole seconds (rounded up), Redis ones milliseconds.
    ttl_ms, wait_s = (150, 0.4) if store_kind == "redis" else (1000, 2.2)
    store = make_store(ttl_ms=ttl_ms)
    try:
        await store.put_many([("k", StoredRow({"v": 1}, 0))])
        assert (await store.get_many(["k"]))[0] is not None
        await asyncio.sleep(wait_s)
        assert await store.get_many(["k"]) == [None]
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_read_only_store_never_writes(make_store: MakeStore) -> None:
    writer, reader = make_store(), make_store(read_only=True)
    try:
        await reader.put_many([("k", StoredRow({"v": 1}, 0))])
        assert await reader.get_many(["k"]) == [None]
        await writer.put_many([("k", StoredRow({"v": 2}, 0))])
        assert await reader.get_many(["k"]) == [StoredRow({"v": 2}, 0)]
    finally:
        await writer.aclose()
        await reader.aclose()


# ---- Redis-only: layout details and the sync twin


@pytest.mark.asyncio
async def test_redis_layout(redis: Servers, new_redis_store: MakeStore) -> None:
    from redis_server import decode_entry

    store = new_redis_store(redis["l1"], ttl_ms=5000)
    bare = new_redis_store(redis["l1"], namespace="", dataset="ds")
    try:
        before_ms = time.time_ns() // 1_000_000
        # A tiered cache hands the row's JSON as served: it is stored as is.
        await store.put_many([("a/b", StoredRow({"x": [1, "y"], "z": 0.5}, 42, json=b'{"z":0.5,"x":[1,"y"]}'))])
        await bare.put_many([("k", StoredRow({"x": 1, "a": None}, -7))])  # no JSON: the fields', sorted
        after_ms = time.time_ns() // 1_000_000
    finally:
        await store.aclose()
        await bare.aclose()
    with redis["l1"].client() as r:
        assert sorted(r.keys()) == [b"ds:k", b"ns:ds:a/b"]
        assert r.type("ns:ds:a/b") == b"string"
        raw = r.get("ns:ds:a/b")
        assert raw[17:] == b'{"z":0.5,"x":[1,"y"]}'
        row, dict_hash, expires_at_ms = decode_entry(raw)
        assert (row, dict_hash) == ({"z": 0.5, "x": [1, "y"]}, 42)
        assert before_ms + 5000 <= expires_at_ms <= after_ms + 5000
        assert 4000 < r.pttl("ns:ds:a/b") <= 5000
        assert r.get("ds:k")[17:] == b'{"a":null,"x":1}'
        assert decode_entry(r.get("ds:k"))[1] == -7


@pytest.mark.asyncio
async def test_redis_rows_are_served_as_stored(redis: Servers, new_redis_store: MakeStore) -> None:
    """``get_rows``: the lookup path hands back the stored JSON bytes, hash and age checked."""
    store = new_redis_store(redis["l1"], ttl_ms=60_000)
    try:
        await store.put_many([("a", StoredRow(None, HASH, json=b'{"p":0.3}')),
                              ("b", StoredRow(None, 5, json=b'{"p":1}'))])
        read = await store.get_rows(["a", "b", "none"], HASH)
        assert (read.rows, read.stale) == ([b'{"p":0.3}', None, None], 1)
        assert 59_000 < read.remaining_ms[0] <= 60_000 and read.remaining_ms[1:] == [0, 0]
        now_ms = time.time() * 1000
        later = await store.get_rows(["a"], HASH, min_expires_ms=int(now_ms) + 61_000)  # written "before"
        assert (later.rows, later.stale) == ([None], 1)
        assert await store.get_many(["a"]) == [StoredRow({"p": 0.3}, HASH)]
    finally:
        await store.aclose()


def test_sync_redis_store(redis: Servers, new_redis_store: MakeStore) -> None:
    from mly.cache.redis import SyncRedisStore

    store = SyncRedisStore.from_connection(redis["l1"].connection(), namespace="ns", dataset="ds", ttl_ms=5000)
    try:
        store.put_many([("k", StoredRow(ROW, HASH))])
        assert store.get_many(["k", "nope"]) == [StoredRow(ROW, HASH), None]
    finally:
        store.close()
    # The async store reads what the sync one wrote: one layout.
    async def read() -> list[StoredRow | None]:
        async_store = new_redis_store(redis["l1"])
        try:
            return await async_store.get_many(["k"])
        finally:
            await async_store.aclose()

    assert asyncio.run(read()) == [StoredRow(ROW, HASH)]


@pytest.mark.asyncio
async def test_redis_down_is_store_unavailable(
    redis: Servers, new_redis_store: MakeStore, unused_port: Callable[[], int]
) -> None:
    server = type(redis["l1"])("nothing", redis["l1"].workdir)  # a port nobody listens on
    server.port = unused_port()
    store = new_redis_store(server)
    try:
        with pytest.raises(StoreUnavailableError, match="redis:nothing"):
            await store.get_many(["k"])
        with pytest.raises(StoreUnavailableError):
            await store.put_many([("k", StoredRow({}, 0))])
    finally:
        await store.aclose()


# ---- Aerospike without a server: the import, the thread pool and the error mapping still run.


@pytest.mark.asyncio
async def test_aerospike_without_server_is_store_unavailable(unused_port: Callable[[], int]) -> None:
    pytest.importorskip("aerospike", reason="pip install 'mly[aerospike]'")
    from mly.cache.aerospike import AerospikeStore, aerospike_client_config, ttl_seconds
    from mly.config.schema import Connection, Timeout

    port = unused_port()
    many = Connection(id="aero", hostnames="10.0.0.1, 10.0.0.2,", port=3100, kind="aerospike",
                      timeout=Timeout(unit="sec", connection=2, socket=1, total=3))
    config = aerospike_client_config(many)  # Go's Connections[] -> client config: every host a seed
    assert config["hosts"] == [("10.0.0.1", 3100), ("10.0.0.2", 3100)]
    assert config["connect_timeout"] == 2000
    for policy in ("read", "batch", "write"):
        assert config["policies"][policy] == {"socket_timeout": 1000, "total_timeout": 3000, "max_retries": 1}
    assert "tls" not in config
    connection = Connection(id="aero", hostnames="127.0.0.1", port=port, kind="aerospike",
                            timeout=Timeout(connection=300, socket=100, total=200))
    config = aerospike_client_config(connection)
    assert config["connect_timeout"] == 300
    assert config["policies"]["read"]["total_timeout"] == 200
    assert [ttl_seconds(0), ttl_seconds(1), ttl_seconds(1500), ttl_seconds(900_000)] == [3600, 1, 2, 900]
    store = AerospikeStore.from_connection(connection, namespace="test", dataset="ds", ttl_ms=1000)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="aerospike:aero"):
            await store.get_many(["k"])
        assert time.monotonic() - started < 2.0
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_a_seed_with_its_own_port_is_reached_there(store_kind: str, request: pytest.FixtureRequest) -> None:
    """``Hostnames: "127.0.0.1:PORT"`` with a wrong ``Port``: the entry's own port wins."""
    import dataclasses

    if store_kind == "redis":
        from mly.cache.redis import RedisStore as Store

        server = request.getfixturevalue("redis")["l1"]
        dataset = "seeds"
    else:
        from mly.cache.aerospike import AerospikeStore as Store  # type: ignore[assignment]

        server = request.getfixturevalue("aerospike_l1")
        dataset = "mly_seeds"
    connection = dataclasses.replace(server.connection(), hostnames=f"127.0.0.1:{server.port}", port=1)
    namespace = AEROSPIKE_NAMESPACE if store_kind == "aerospike" else "ns"
    store = Store.from_connection(connection, namespace=namespace, dataset=dataset, ttl_ms=60_000)
    try:
        await store.put_many([("k", StoredRow({"v": 1}, HASH))])
        assert await store.get_many(["k"]) == [StoredRow({"v": 1}, HASH)]
    finally:
        await store.aclose()
