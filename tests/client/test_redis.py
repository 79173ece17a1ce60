"""A client and a server sharing one Redis L1: the server's write is the client's hit and
the client's write is the server's hit (same key, same layout, same dictHash); a Redis
killed mid-test turns lookups into misses, never into failed predictions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from mly.client import Client, SharedStores

TIMEOUT = {"Connection": 200, "Socket": 200, "Total": 200}


def redis_config(model_dirs: dict[str, str], port: int) -> dict[str, Any]:
    return {
        "Models": [{"ID": "t", "URL": model_dirs["keras"], "DataStore": "tiers",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [{"ID": "l1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": port, "Timeout": TIMEOUT}],
        "Datastores": [{"ID": "tiers", "Cache": {"SizeMb": 4}, "Connection": "l1", "Namespace": "mly",
                        "Dataset": "t", "TimeToLiveMs": 60000}],
    }


@pytest.fixture(scope="module")
def servers(counting_server: Any, model_dirs: dict[str, str], redis_servers: dict[str, Any],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``shared``: the model with memory + Redis L1; ``plain``: the same model ID, no datastore."""
    shared = counting_server(redis_config(model_dirs, redis_servers["l1"].port), tmp_path_factory.mktemp("rs")).start()
    plain_config = {"Models": [{"ID": "t", "URL": model_dirs["keras"], "Inputs": [{"Name": "fl", "Precision": 2}]}]}
    plain = counting_server(plain_config, tmp_path_factory.mktemp("plain")).start()
    yield {"shared": shared, "plain": plain, "redis": redis_servers["l1"]}
    shared.stop()
    plain.stop()


@pytest.fixture
def redis(servers: dict[str, Any]) -> Any:
    servers["redis"].ensure_up()
    servers["redis"].flush()
    return servers["redis"]


def post(server: Any, row: dict) -> dict:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answer = http.post("/v1/api/model/t/eval", content=orjson.dumps(row))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def flush_server(server: Any) -> None:
    cache = server.registry.caches["tiers"]
    assert asyncio.run_coroutine_threadsafe(cache.flush(5.0), server.loop).result(10)


def test_the_servers_write_is_the_clients_hit(servers: dict[str, Any], redis: Any) -> None:
    shared = servers["shared"]
    row = {"sa": "b", "sl": "c", "i1": 30, "fl": 0.5}
    computed = post(shared, row)
    flush_server(shared)
    with Client("t", hosts=[shared.address]) as client:
        key = client._core.state.schema.key(row)  # type: ignore[union-attr]
        with redis.client() as r:
            stored = r.hgetall(f"mly:t:{key}")
        assert int(stored[b"dictHash"]) == client.dict_hash == computed["dictHash"]
        before = shared.counter.evals
        answer = client.predict(row)
        assert shared.counter.evals == before  # found in Redis (L1), copied into memory
        assert answer.status == "cached" and answer.data == computed["data"]
        assert client.cache is not None and client.cache.counters.hits_l1 == 1
        assert client.predict(row).status == "cached" and client.cache.counters.hits_memory == 1


def test_the_clients_write_is_the_servers_hit(servers: dict[str, Any], redis: Any) -> None:
    shared, plain = servers["shared"], servers["plain"]
    with httpx.Client(base_url=shared.url) as http:
        meta = http.get("/v1/api/model/t/meta/config").json()
    row = {"sa": "c", "sl": "a", "i1": 10, "fl": 2.25}
    # The client asks a server that writes no store and writes the answer to Redis itself.
    with Client("t", hosts=[plain.address], remote_config=meta, write_back_remote=True) as client:
        answer = client.predict(row)
        assert answer.status == "ok" and plain.counter.evals >= 1
        assert client.cache is not None and client._loop is not None
        assert client._loop.run(client.cache.flush(5.0))
    evaluated = shared.evaluated("t")
    served = post(shared, row)
    assert shared.evaluated("t") == evaluated  # a Redis hit: TensorFlow was not asked
    assert served["data"] == answer.data and served["dictHash"] == answer.dict_hash


def test_redis_killed_mid_test_only_turns_lookups_into_misses(servers: dict[str, Any], redis: Any) -> None:
    shared = servers["shared"]
    shared_stores = SharedStores()
    try:
        with Client("t", hosts=[shared.address], shared_stores=shared_stores) as client, \
                Client("t", hosts=[shared.address], shared_stores=shared_stores, cache_size_mb=1) as other:
            assert len(shared_stores._redis) == 1  # one connection pool for both clients
            rows = [{"sa": "a", "sl": "b", "i1": 20, "fl": 30.0 + i} for i in range(4)]
            assert client.predict(rows[0]).status == "ok"
            redis.kill()
            for r in rows[1:]:
                assert client.predict(r).status == "ok"
            assert [d for d in client.predict(rows).data] == [client.predict(r).data for r in rows]
            fresh = {"sa": "c", "sl": "c", "i1": 30, "fl": 99.0}
            assert other.predict(fresh).status == "ok" and other.predict(fresh).status == "cached"
            assert client.cache is not None
            counters = client.cache.counters
            assert counters.errors + counters.breaker_open_skips + counters.timeouts >= 1
            redis.start()
    finally:
        shared_stores.close()
