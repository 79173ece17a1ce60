"""mly's own Aerospike batch reads on a real 3-node cluster (replication 2): routed per node, and
reading on from the replicas when a node is killed mid-traffic."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aerospike_server import NAMESPACE

from mly._native.aerospike_wire import digest, partition_id
from mly.cache import TieredCache
from mly.cache.aerospike import AerospikeStore
from mly.cache.base import StoredRow

H = 987654321
ROWS = 300


def store(cluster: Any, dataset: str, *, native: bool) -> AerospikeStore:
    return AerospikeStore.from_connection(cluster.connection(timeout_ms=400), namespace=NAMESPACE, dataset=dataset,
                                          ttl_ms=600_000, name=f"aerospike:{dataset}", json_rows=True,
                                          native_reads=native)


def expected(i: int) -> bytes:
    return b'{"i":%d,"p":0.5,"s":"row %d"}' % (i, i)


async def written_and_spread(native: AerospikeStore, official: AerospikeStore, cache: TieredCache, dataset: str,
                             keys: list[str], reference: TieredCache | None = None) -> dict[str, int]:
    """The rows written (through the official client), then read until the partition map has each
    node master some of them (a cluster just formed migrates partitions for a few seconds): the index
    of each key's node. Every read meanwhile is right (a node proxies what it lost) and, given a
    ``reference``, what it reads too."""
    assert native.lookups is not None
    await official.put_many([(key, StoredRow({"i": i, "p": 0.5, "s": f"row {i}"}, H))
                             for i, key in enumerate(keys)])
    deadline = time.monotonic() + 60
    while True:
        rows = await cache.get_many(keys, H)
        assert rows == [expected(i) for i in range(len(keys))]
        if reference is not None:
            assert rows == await reference.get_many(keys, H)
        pmap = native.lookups._map
        assert pmap is not None
        owner = {key: pmap.ranks[0][partition_id(digest(dataset.encode(), key))] for key in keys}
        if len(set(owner.values())) == 3:  # each node masters some keys: one batch read per node
            return owner
        assert time.monotonic() < deadline, f"keys still routed to {set(owner.values())} only"
        await asyncio.sleep(0.5)


@pytest.mark.asyncio
async def test_reads_are_routed_to_every_node_and_go_on_from_the_replicas_when_one_dies(
    aerospike_cluster: Any, tmp_path: Path
) -> None:
    dataset = f"nat_{uuid.uuid4().hex[:8]}"
    native, official = store(aerospike_cluster, dataset, native=True), store(aerospike_cluster, dataset, native=False)
    assert native.lookups is not None
    cache = TieredCache(None, native, None, ttl_ms=600_000, timeout_s=1.0)
    reference = TieredCache(None, official, None, ttl_ms=600_000, timeout_s=1.0)
    keys = [f"k{i}" for i in range(ROWS)]
    try:
        await written_and_spread(native, official, cache, dataset, keys, reference)

        wrong: list[tuple[str, bytes]] = []
        complete_at: list[float] = []
        killed_at = 0.0

        async def traffic(until: float) -> None:
            while time.monotonic() < until:
                got = await cache.get_many(keys, H)
                for i, row in enumerate(got):
                    if row is not None and row != expected(i):
                        wrong.append((keys[i], row))
                if killed_at and all(row is not None for row in got):
                    complete_at.append(time.monotonic())
                await asyncio.sleep(0.01)

        runner = asyncio.create_task(traffic(time.monotonic() + 20))
        await asyncio.sleep(1.0)
        aerospike_cluster.nodes[1].kill()
        killed_at = time.monotonic()
        await runner
        assert wrong == []
        assert complete_at, "no lookup found every row again after a node died"
        recovered_s = complete_at[0] - killed_at
        print(f"every row found again {recovered_s:.2f} s after the kill; failed lookups: "
              f"{cache.counters.errors + cache.counters.timeouts}")
        assert complete_at[-1] > time.monotonic() - 1.0  # and still at the end
        assert recovered_s < 10
        assert await cache.get_many(keys, H) == [expected(i) for i in range(ROWS)]
    finally:
        await cache.aclose()
        await reference.aclose()


@pytest.mark.asyncio
async def test_a_paused_node_holds_up_only_the_lookups_with_a_key_on_it(aerospike_cluster: Any) -> None:
    """Lookups of one event-loop turn are read together, one batch read per node; each is answered as
    soon as the nodes of its own keys replied. While a node is paused (SIGSTOP: connected, silent), a
    lookup whose keys are all on the other nodes gets its rows as it would alone; only a lookup with a
    key on the paused node waits (and times out)."""
    dataset = f"nat_{uuid.uuid4().hex[:8]}"
    native, official = store(aerospike_cluster, dataset, native=True), store(aerospike_cluster, dataset, native=False)
    assert native.lookups is not None
    cache = TieredCache(None, native, None, ttl_ms=600_000, timeout_s=0.5)
    keys = [f"k{i}" for i in range(ROWS)]
    try:
        owner = await written_and_spread(native, official, cache, dataset, keys)
        pmap = native.lookups._map
        assert pmap is not None
        silent = owner[keys[0]]
        _, port = pmap.nodes[silent]
        (node,) = [n for n in aerospike_cluster.nodes if n.port == port]
        on_it = [key for key in keys if owner[key] == silent][:5]
        elsewhere = [key for key in keys if owner[key] != silent][:5]
        node.pause()
        try:
            held, free = await asyncio.gather(cache.get_many(on_it, H), cache.get_many(elsewhere, H))
        finally:
            node.resume()
        assert free == [expected(int(key[1:])) for key in elsewhere]
        assert held == [None] * len(on_it)
        assert cache.counters.timeouts == 1
    finally:
        await cache.aclose()
        await official.aclose()
