"""The server with real Redis L1 and L2 tiers: read order, upward copy, stale entries, Redis dying."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest
from live_server import LiveServer
from model_builders import expected_keras_lookup
from redis_server import RedisServer, decode_entry, encode_entry

TIMEOUT_MS = 200


@pytest.fixture(scope="module")
def tiered_server(
    model_dirs: dict[str, str], redis_servers: dict[str, RedisServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    timeout = {"Connection": TIMEOUT_MS, "Socket": TIMEOUT_MS, "Total": TIMEOUT_MS}
    config = {
        "Models": [{"ID": "t", "URL": model_dirs["keras"], "DataStore": "tiers",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [
            {"ID": "l1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": redis_servers["l1"].port, "Timeout": timeout},
            {"ID": "l2", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": redis_servers["l2"].port, "Timeout": timeout},
        ],
        "Datastores": [{"ID": "tiers", "Cache": {"SizeMb": 4}, "Connection": "l1", "Namespace": "mly",
                        "Dataset": "t", "TimeToLiveMs": 60000,
                        "L2": {"Connection": "l2", "Namespace": "mly", "Dataset": "t"}}],
    }
    live = LiveServer(config, tmp_path_factory.mktemp("tiered")).start()
    yield live
    live.stop()


@pytest.fixture
def servers(redis_servers: dict[str, RedisServer]) -> dict[str, RedisServer]:
    for server in redis_servers.values():
        server.ensure_up()
        server.flush()
    return redis_servers


def post(server: LiveServer, row: dict) -> dict:
    with server.client() as client:
        response = client.post("/v1/api/model/t/eval", content=orjson.dumps(row))
    assert response.status_code == 200, response.text
    return response.json()


def key_of(server: LiveServer, row: dict) -> str:
    generation = server.registry.get("t").current
    assert generation.key_schema is not None
    return generation.key_schema.key(row)


def flush_writes(server: LiveServer) -> None:
    cache = server.registry.caches["tiers"]
    loop = server.loop
    assert asyncio.run_coroutine_threadsafe(cache.flush(5.0), loop).result(10)


def forget_memory(server: LiveServer) -> None:
    server.registry.caches["tiers"].memory.clear()


def evaluated(server: LiveServer) -> int:
    return server.registry.get("t").rows_evaluated


def test_written_behind_to_both_tiers_and_read_back(tiered_server: LiveServer, servers: dict) -> None:
    row = {"sa": "a", "sl": "b", "i1": 30, "fl": 1.25}
    first = post(tiered_server, row)
    flush_writes(tiered_server)
    key = f"mly:t:{key_of(tiered_server, row)}"
    for tier in ("l1", "l2"):
        with servers[tier].client() as r:
            entry = decode_entry(r.get(key))
        assert entry is not None
        assert entry[1] == first["dictHash"]
        assert entry[0]["score"] == pytest.approx(first["data"]["score"])

    forget_memory(tiered_server)
    before = evaluated(tiered_server)
    again = post(tiered_server, row)  # memory empty: answered by L1
    assert evaluated(tiered_server) == before
    assert again["data"] == first["data"]
    assert tiered_server.registry.caches["tiers"].counters.hits_l1 >= 1


def test_l2_hit_is_copied_up(tiered_server: LiveServer, servers: dict) -> None:
    row = {"sa": "c", "sl": "c", "i1": 20, "fl": 2.5}
    first = post(tiered_server, row)
    flush_writes(tiered_server)
    key = f"mly:t:{key_of(tiered_server, row)}"
    with servers["l1"].client() as r:
        r.delete(key)
    forget_memory(tiered_server)
    before = evaluated(tiered_server)
    assert post(tiered_server, row)["data"] == first["data"]
    assert evaluated(tiered_server) == before
    flush_writes(tiered_server)
    with servers["l1"].client() as r:
        assert r.exists(key)  # copied back into L1


def test_entry_of_another_dictionary_is_never_served(tiered_server: LiveServer, servers: dict) -> None:
    row = {"sa": "b", "sl": "a", "i1": 10, "fl": 3.75}
    key = f"mly:t:{key_of(tiered_server, row)}"
    for tier in ("l1", "l2"):
        with servers[tier].client() as r:
            stale = {"label_id": 0, "score": 999, "vec": [0, 0, 0]}
            r.set(key, encode_entry(stale, 12345, int(time.time() * 1000) + 60_000), px=60_000)
    before = evaluated(tiered_server)
    out = post(tiered_server, row)
    assert evaluated(tiered_server) == before + 1
    want = expected_keras_lookup(["b"], ["a"], [10], [3.75])
    assert out["data"]["score"] == pytest.approx(float(want["score"][0, 0]))
    assert tiered_server.registry.caches["tiers"].counters.stale >= 1


def test_redis_dying_never_fails_a_request(tiered_server: LiveServer, servers: dict) -> None:
    cache = tiered_server.registry.caches["tiers"]
    servers["l1"].kill()
    servers["l2"].kill()
    forget_memory(tiered_server)
    started = time.monotonic()
    for i in range(10):
        out = post(tiered_server, {"sa": "a", "sl": "a", "i1": 10, "fl": 10 + i})
        assert out["status"] == "ok"
    # Bounded by the store timeout once, then the breakers answer without I/O.
    assert time.monotonic() - started < 10 * TIMEOUT_MS / 1000 + 5
    assert cache.l1 is not None and cache.counters.breaker_open_skips > 0

    servers["l1"].start()
    servers["l2"].start()
    row = {"sa": "c", "sl": "b", "i1": 30, "fl": 20.0}
    deadline = time.monotonic() + 60
    while True:  # the breakers' probes find Redis again; then writes land in L1
        post(tiered_server, {**row, "fl": row["fl"] + 0.01})
        row["fl"] += 0.01
        flush_writes(tiered_server)
        with servers["l1"].client() as r:
            if r.dbsize() > 0:
                break
        assert time.monotonic() < deadline, "L1 never recovered"
        time.sleep(0.2)
