"""The server with real Aerospike L1 and L2 tiers (two server processes): read order, upward copy,
stale entries, records in Go's layout, single-flight, Aerospike dying."""

from __future__ import annotations

import asyncio
import concurrent.futures
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aerospike_server import NAMESPACE, AerospikeServer, aerospike_l1, aerospike_l2
from live_server import LiveServer
from model_builders import expected_keras_lookup

__all__ = ["aerospike_l1", "aerospike_l2"]  # session fixtures used here

TIMEOUT_MS = 200
DATASET = f"e2e_{uuid.uuid4().hex[:8]}"
TTL_S = 60


@pytest.fixture(scope="module")
def tiered_server(
    model_dirs: dict[str, str], aerospike_l1: AerospikeServer, aerospike_l2: AerospikeServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    timeout = {"Connection": 1000, "Socket": TIMEOUT_MS, "Total": TIMEOUT_MS}
    config = {
        "Models": [{"ID": "t", "URL": model_dirs["keras"], "DataStore": "tiers",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [  # Kind omitted: aerospike is the default, as in Go
            {"ID": "l1", "Hostnames": aerospike_l1.host, "Port": aerospike_l1.port, "Timeout": timeout},
            {"ID": "l2", "Hostnames": aerospike_l2.host, "Port": aerospike_l2.port, "Timeout": timeout},
        ],
        "Datastores": [{"ID": "tiers", "Cache": {"SizeMb": 4}, "Connection": "l1", "Namespace": NAMESPACE,
                        "Dataset": DATASET, "TimeToLiveMs": TTL_S * 1000,
                        "L2": {"Connection": "l2", "Namespace": NAMESPACE, "Dataset": DATASET}}],
    }
    live = LiveServer(config, tmp_path_factory.mktemp("tiered-aerospike")).start()
    yield live
    live.stop()


@pytest.fixture
def servers(aerospike_l1: AerospikeServer, aerospike_l2: AerospikeServer) -> dict[str, AerospikeServer]:
    for server in (aerospike_l1, aerospike_l2):
        server.ensure_up()
    return {"l1": aerospike_l1, "l2": aerospike_l2}


def post(server: LiveServer, row: dict) -> dict:
    with server.client() as client:
        response = client.post("/v1/api/model/t/eval", content=orjson.dumps(row))
    assert response.status_code == 200, response.text
    return response.json()


def record_key(server: LiveServer, row: dict) -> tuple[str, str, str]:
    generation = server.registry.get("t").current
    assert generation.key_schema is not None
    return (NAMESPACE, DATASET, generation.key_schema.key(row))


def read(server: AerospikeServer, key: tuple[str, str, str]) -> dict[str, Any] | None:
    import aerospike

    with server.connected() as client:
        try:
            return dict(client.get(key)[2])
        except aerospike.exception.RecordNotFound:
            return None


def flush_writes(server: LiveServer) -> None:
    cache = server.registry.caches["tiers"]
    assert asyncio.run_coroutine_threadsafe(cache.flush(5.0), server.loop).result(10)


def forget_memory(server: LiveServer) -> None:
    server.registry.caches["tiers"].memory.clear()


def evaluated(server: LiveServer) -> int:
    return int(server.registry.get("t").rows_evaluated)


def test_written_behind_to_both_tiers_in_go_layout_and_read_back(tiered_server: LiveServer, servers: dict) -> None:
    row = {"sa": "a", "sl": "b", "i1": 30, "fl": 1.25}
    first = post(tiered_server, row)
    flush_writes(tiered_server)
    key = record_key(tiered_server, row)
    for tier in ("l1", "l2"):
        bins = read(servers[tier], key)
        assert bins is not None, tier
        assert set(bins) == {"score", "label_id", "vec", "dictHash"}
        assert bins["dictHash"] == first["dictHash"] and type(bins["dictHash"]) is int
        assert type(bins["score"]) is float and bins["score"] == pytest.approx(first["data"]["score"])
        assert type(bins["label_id"]) is int

    forget_memory(tiered_server)
    before = evaluated(tiered_server)
    again = post(tiered_server, row)  # memory empty: answered by L1
    assert evaluated(tiered_server) == before
    assert again == {**first, "serviceTimeMcs": again["serviceTimeMcs"]}
    assert tiered_server.registry.caches["tiers"].counters.hits_l1 >= 1


def test_record_written_by_go_is_served(tiered_server: LiveServer, servers: dict) -> None:
    """A Go server's record (float32 widened to a double, int bins, dictHash bin) answers the request."""
    import aerospike

    row = {"sa": "b", "sl": "b", "i1": 20, "fl": 7.5}
    dict_hash = tiered_server.registry.get("t").current.dict_hash
    widened = struct.unpack("<f", struct.pack("<f", 0.3))[0]
    with servers["l1"].connected() as client:
        client.put(record_key(tiered_server, row),
                   {"score": widened, "label_id": 2, "vec": [0.5, 1.0, 2.0], "dictHash": dict_hash},
                   policy={"key": aerospike.POLICY_KEY_SEND, "ttl": TTL_S})
    before = evaluated(tiered_server)
    out = post(tiered_server, row)
    assert evaluated(tiered_server) == before
    assert out["data"] == {"label_id": 2, "score": 0.3, "vec": [0.5, 1.0, 2.0]}


def test_l2_hit_is_copied_up(tiered_server: LiveServer, servers: dict) -> None:
    row = {"sa": "c", "sl": "c", "i1": 20, "fl": 2.5}
    first = post(tiered_server, row)
    flush_writes(tiered_server)
    key = record_key(tiered_server, row)
    with servers["l1"].connected() as client:
        client.remove(key)
    forget_memory(tiered_server)
    before = evaluated(tiered_server)
    assert post(tiered_server, row)["data"] == first["data"]
    assert evaluated(tiered_server) == before
    assert tiered_server.registry.caches["tiers"].counters.hits_l2 >= 1
    flush_writes(tiered_server)
    copied = read(servers["l1"], key)  # copied back into L1, bins and dictHash
    assert copied is not None and copied["dictHash"] == first["dictHash"]


def test_entry_of_another_dictionary_is_never_served(tiered_server: LiveServer, servers: dict) -> None:
    row = {"sa": "b", "sl": "a", "i1": 10, "fl": 3.75}
    key = record_key(tiered_server, row)
    for tier in ("l1", "l2"):
        with servers[tier].connected() as client:
            client.put(key, {"score": 999.0, "label_id": 0, "vec": [0, 0, 0], "dictHash": 12345})
    before = evaluated(tiered_server)
    out = post(tiered_server, row)
    assert evaluated(tiered_server) == before + 1
    want = expected_keras_lookup(["b"], ["a"], [10], [3.75])
    assert out["data"]["score"] == pytest.approx(float(want["score"][0, 0]))
    assert tiered_server.registry.caches["tiers"].counters.stale >= 2


def test_concurrent_misses_on_one_key_evaluate_once(tiered_server: LiveServer, servers: dict) -> None:
    row = {"sa": "c", "sl": "a", "i1": 20, "fl": 5.55}
    before = evaluated(tiered_server)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: post(tiered_server, row), range(32)))
    assert evaluated(tiered_server) == before + 1
    assert all(r["data"] == results[0]["data"] for r in results)


def test_aerospike_dying_never_fails_a_request(tiered_server: LiveServer, servers: dict) -> None:
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
    deadline = time.monotonic() + 30
    while True:  # the breakers' probes find Aerospike again; then writes land in L1
        row["fl"] += 0.01
        post(tiered_server, row)
        flush_writes(tiered_server)
        if read(servers["l1"], record_key(tiered_server, row)) is not None:
            break
        assert time.monotonic() < deadline, "L1 never recovered"
        time.sleep(0.1)
