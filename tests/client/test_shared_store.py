"""A client and a server sharing one L1 store (Redis, and Aerospike where it can run): the
server's write is the client's hit and the client's write is the server's hit (same key,
layout and dictHash); a store killed or frozen mid-test only turns lookups into misses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from aerospike_server import NAMESPACE, aerospike_l1
from redis_server import decode_entry

from mly.client import AsyncClient, Client, SharedStores

__all__ = ["aerospike_l1"]  # session fixture used here

TIMEOUT_MS = 250


class Store:
    """One real store process and how to read an entry from it directly."""

    def __init__(self, kind: str, server: Any) -> None:
        self.kind = kind
        self.server = server
        self.namespace = "mly" if kind == "redis" else NAMESPACE
        self.rows = 0

    def connection(self) -> dict[str, Any]:
        timeout = {"Connection": 1000, "Socket": TIMEOUT_MS, "Total": TIMEOUT_MS}
        return {"ID": "l1", "Kind": self.kind, "Hostnames": "127.0.0.1", "Port": self.server.port, "Timeout": timeout}

    def stored(self, key: str) -> tuple[dict[str, Any], int]:
        """The entry's fields and dictHash as the store holds them."""
        if self.kind == "redis":
            with self.server.client() as r:
                entry = decode_entry(r.get(f"mly:t:{key}"))
            assert entry is not None
            return entry[0], entry[1]
        with self.server.connected() as client:
            _, _, bins = client.get((self.namespace, "t", key))
        dict_hash = bins.pop("dictHash", 0)
        return bins, int(dict_hash)

    def row(self) -> dict[str, Any]:
        """A row no earlier test of this module used (the server's memory tier remembers)."""
        self.rows += 1
        return {"sa": "abc"[self.rows % 3], "sl": "b", "i1": 20, "fl": 100.0 * (self.kind == "redis") + self.rows}


@pytest.fixture(scope="module", params=["redis", "aerospike"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "redis":
        return Store("redis", request.getfixturevalue("redis_servers")["l1"])
    return Store("aerospike", request.getfixturevalue("aerospike_l1"))


@pytest.fixture(scope="module")
def servers(counting_server: Any, model_dirs: dict[str, str], store: Store,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``shared``: the model with memory + the store as L1; ``plain``: the same model ID, no datastore."""
    model = {"ID": "t", "URL": model_dirs["keras"], "Inputs": [{"Name": "fl", "Precision": 2}]}
    config = {
        "Models": [{**model, "DataStore": "tiers"}],
        "Connections": [store.connection()],
        "Datastores": [{"ID": "tiers", "Cache": {"SizeMb": 4}, "Connection": "l1", "Namespace": store.namespace,
                        "Dataset": "t", "TimeToLiveMs": 60000}],
    }
    shared = counting_server(config, tmp_path_factory.mktemp(f"shared-{store.kind}")).start()
    plain = counting_server({"Models": [model]}, tmp_path_factory.mktemp(f"plain-{store.kind}")).start()
    yield {"shared": shared, "plain": plain}
    shared.stop()
    plain.stop()


@pytest.fixture
def up(store: Store) -> Store:
    store.server.ensure_up()
    return store


def post(server: Any, row: dict) -> dict:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answer = http.post("/v1/api/model/t/eval", content=orjson.dumps(row))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def flush_server(server: Any) -> None:
    cache = server.registry.caches["tiers"]
    assert asyncio.run_coroutine_threadsafe(cache.flush(5.0), server.loop).result(10)


def test_the_servers_write_is_the_clients_hit(servers: dict[str, Any], up: Store) -> None:
    shared = servers["shared"]
    row = up.row()
    computed = post(shared, row)
    flush_server(shared)
    with Client("t", hosts=[shared.address]) as client:
        key = client._core.state.schema.key(row)  # type: ignore[union-attr]
        fields, dict_hash = up.stored(key)
        assert dict_hash == client.dict_hash == computed["dictHash"]
        assert fields["label_id"] == computed["data"]["label_id"]
        before = shared.counter.evals
        answer = client.predict(row)
        assert shared.counter.evals == before  # found in L1, copied into memory
        assert answer.status == "cached" and answer.data == computed["data"]
        assert client.cache is not None and client.cache.counters.hits_l1 == 1
        assert client.predict(row).status == "cached" and client.cache.counters.hits_memory == 1


def test_the_async_client_reads_the_same_entries(servers: dict[str, Any], up: Store) -> None:
    shared = servers["shared"]
    row = up.row()
    computed = post(shared, row)
    flush_server(shared)

    async def run() -> None:
        async with AsyncClient("t", hosts=[shared.address]) as client:
            before = shared.counter.evals
            answer = await client.predict([row, row])
            assert shared.counter.evals == before
            assert answer.status == "cached" and answer.data == [computed["data"]] * 2

    asyncio.run(run())


def test_the_clients_write_is_the_servers_hit(servers: dict[str, Any], up: Store) -> None:
    shared, plain = servers["shared"], servers["plain"]
    with httpx.Client(base_url=shared.url) as http:
        meta = http.get("/v1/api/model/t/meta/config").json()
    row = up.row()
    # The client asks a server that writes no store, and writes the answer to L1 itself.
    with Client("t", hosts=[plain.address], remote_config=meta, write_back_remote=True) as client:
        asked = plain.counter.evals
        answer = client.predict(row)
        assert answer.status == "ok" and plain.counter.evals == asked + 1
        assert client.cache is not None and client._loop is not None
        assert client._loop.run(client.cache.flush(5.0))
    evaluated = shared.evaluated("t")
    served = post(shared, row)
    assert shared.evaluated("t") == evaluated  # an L1 hit: TensorFlow was not asked
    assert served["data"] == answer.data and served["dictHash"] == answer.dict_hash


def test_a_store_killed_mid_test_only_turns_lookups_into_misses(servers: dict[str, Any], up: Store) -> None:
    shared = servers["shared"]
    shared_stores = SharedStores()
    try:
        with Client("t", hosts=[shared.address], shared_stores=shared_stores) as client, \
                Client("t", hosts=[shared.address], shared_stores=shared_stores, cache_size_mb=1) as other:
            rows = [up.row() for _ in range(4)]
            assert client.predict(rows[0]).status == "ok"
            up.server.kill()
            for r in rows[1:]:
                assert client.predict(r).status == "ok"
            assert client.predict(rows).data == [client.predict(r).data for r in rows]
            fresh = up.row()
            assert other.predict(fresh).status == "ok" and other.predict(fresh).status == "cached"
            assert client.cache is not None
            counters = client.cache.counters
            assert counters.errors + counters.breaker_open_skips + counters.timeouts >= 1
            if up.kind == "redis":
                assert len(shared_stores._redis) == 1  # one connection pool for both clients
    finally:
        shared_stores.close()
        up.server.ensure_up()


def test_a_frozen_store_costs_at_most_its_timeout(servers: dict[str, Any], up: Store) -> None:
    shared = servers["shared"]
    with Client("t", hosts=[shared.address]) as client:
        up.server.pause()
        try:
            for _ in range(3):
                r = up.row()
                assert client.predict(r).status == "ok" and client.predict(r).status == "cached"
            assert client.cache is not None and client.cache.counters.timeouts >= 1
        finally:
            up.server.resume()
