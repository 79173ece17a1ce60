"""Aerospike-only behaviours of the store under the tiered cache, on a real server.

The kill drills stop the session's server for real (SIGKILL) and start it again
(empty) before the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import orjson
import pytest
from aerospike_server import NAMESPACE, AerospikeServer

from mly.cache import TieredCache
from mly.cache.aerospike import AerospikeStore
from mly.cache.base import StoredRow
from mly.cache.breaker import BreakerState, CircuitBreaker, ExponentialBackoff

H = 1234567890123
TIMEOUT_S = 0.3
BACKOFF_S = 0.3
NODE_DROP_TIMEOUT_S = 15.0


@pytest.fixture
def aero(aerospike_l1: AerospikeServer) -> AerospikeServer:
    aerospike_l1.ensure_up()
    return aerospike_l1


def store(server: AerospikeServer, dataset: str, *, timeout_ms: int = 250, **kwargs: Any) -> AerospikeStore:
    return AerospikeStore.from_connection(server.connection(timeout_ms), namespace=NAMESPACE, dataset=dataset,
                                          ttl_ms=60_000, name=f"aerospike:{dataset}", **kwargs)


def make_cache(l1: AerospikeStore, l2: AerospikeStore | None = None) -> TieredCache:
    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(ExponentialBackoff(base_s=BACKOFF_S, cap_s=2.0, jitter=0.0), name=name)

    return TieredCache(None, l1, l2, ttl_ms=60_000, timeout_s=TIMEOUT_S, breaker_factory=breaker)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def wait_until_node_dropped(l1: AerospikeStore) -> None:
    """Until the client's tend has taken the dead node out of its cluster map.

    Before that, commands fail with connection errors (which always tripped the
    breaker); after it, a batch read answers status 1 with no records.
    """
    client = l1.sync._connected()
    deadline = time.monotonic() + NODE_DROP_TIMEOUT_S
    while client.get_nodes():
        assert time.monotonic() < deadline, "the client kept the dead node in its cluster map"
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_dead_node_dropped_from_the_cluster_map_keeps_the_breaker_open(
    aero: AerospikeServer, caplog: pytest.LogCaptureFixture
) -> None:
    l1 = store(aero, unique("mly_gone"))
    cache = make_cache(l1)
    c = cache.counters
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        assert await cache.get_many(["k"], H) == [b'{"v":1}']
        aero.kill()
        await wait_until_node_dropped(l1)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mly"):
            assert await cache.get_many(["k"], H) == [None]
            assert cache.l1 is not None
            breaker = cache.l1.breaker
            assert breaker.state is BreakerState.OPEN  # the read is an outage, not a success
            for _ in range(10):  # open: instant misses, no I/O
                assert await cache.get_many(["k"], H) == [None]
            assert (c.errors, c.breaker_open_skips, c.misses) == (1, 10, 11)
            await asyncio.sleep(max(0.0, breaker.retry_at - time.monotonic()) + 0.02)
            cache.put_many([("w", {"v": 2}, b'{"v":2}')], H)  # the write is the probe: it fails too
            assert await cache.flush()
            assert (c.write_errors, breaker.state, breaker.opened) == (1, BreakerState.OPEN, 2)
            await asyncio.sleep(max(0.0, breaker.retry_at - time.monotonic()) + 0.02)
            assert await cache.get_many(["k"], H) == [None]  # and so does the next read probe
            assert (breaker.state, breaker.opened) == (BreakerState.OPEN, 3)
        assert not [r for r in caplog.records if "rows for" in r.getMessage()]  # no length-mismatch warnings

        aero.ensure_up()  # empty again; the client finds the node by itself
        deadline = time.monotonic() + NODE_DROP_TIMEOUT_S
        while await cache.get_many(["k"], H) != [b'{"v":3}']:
            assert time.monotonic() < deadline, f"the breaker never closed again: {breaker}"
            with contextlib.suppress(OSError):
                await l1.put_many([("k", StoredRow({"v": 3}, H))])  # the store itself has no breaker
            await asyncio.sleep(max(0.0, breaker.retry_at - time.monotonic()) + 0.02)
        assert breaker.state is BreakerState.CLOSED
    finally:
        aero.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_row_with_a_null_field_reaches_l1_and_l2_without_that_bin(aero: AerospikeServer) -> None:
    l1, l2 = store(aero, unique("mly_null1")), store(aero, unique("mly_null2"))
    cache = make_cache(l1, l2)
    row = {"score": 0.5, "label": None}
    try:
        cache.put_many([("k", row, orjson.dumps(row))], H)
        assert await cache.flush()
        assert (cache.counters.writes, cache.counters.write_errors) == (2, 0)
        assert await l1.get_many(["k"]) == [StoredRow({"score": 0.5}, H)]
        assert await l2.get_many(["k"]) == [StoredRow({"score": 0.5}, H)]
        assert await cache.get_many(["k"], H) == [b'{"score":0.5}']
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_a_burst_of_lookups_on_a_healthy_store_keeps_the_breaker_closed(aero: AerospikeServer) -> None:
    """4,000 lookups at once on 4 read threads, Go's default Timeout.Total (450 ms)."""
    l1 = store(aero, unique("mly_burst"), timeout_ms=450)
    cache = TieredCache(None, l1, None, ttl_ms=60_000, timeout_s=0.45)
    try:
        await l1.put_many([(f"k{i}", StoredRow({"v": i}, H)) for i in range(100)])
        found = await asyncio.gather(*(cache.get_many([f"k{i % 100}"], H) for i in range(4000)))
        c = cache.counters
        assert cache.l1 is not None
        assert (c.timeouts, c.errors, cache.l1.breaker.opened) == (0, 0, 0)
        hits = sum(rows == [b'{"v":%d}' % (i % 100)] for i, rows in enumerate(found))
        # On a busy machine a lookup may wait half its deadline for a thread: then it is a miss, never a failure.
        assert hits + l1.reader.busy_misses == 4000
        assert l1.reader.reads < 100  # lookups that waited for a thread were read together
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_lookups_waiting_for_a_thread_are_read_together_and_the_queue_is_bounded(
    aero: AerospikeServer,
) -> None:
    l1 = store(aero, unique("mly_queue"), timeout_ms=5000, max_workers=1, max_batch_keys=5, max_queued_keys=10)
    try:
        await l1.put_many([(f"k{i}", StoredRow({"v": i}, H)) for i in range(12)])
        reads = l1.reader.reads
        aero.pause()  # the one read thread now waits on the frozen server
        first = asyncio.ensure_future(l1.get_many(["k0"]))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(l1.get_many([f"k{i}"])) for i in range(1, 11)]
        await asyncio.sleep(0)  # all ten are queued: 10 keys, the bound
        assert await l1.get_many(["k11"]) == [None]  # a full queue is a miss at once, not a failure
        assert l1.reader.busy_misses == 1
        aero.resume()
        assert await first == [StoredRow({"v": 0}, H)]
        assert await asyncio.gather(*waiting) == [[StoredRow({"v": i}, H)] for i in range(1, 11)]
        assert l1.reader.reads - reads == 3  # the first, then the ten in two reads of five keys
    finally:
        aero.ensure_up()
        await l1.aclose()


@pytest.mark.asyncio
async def test_lookups_wait_for_the_read_in_flight_and_a_second_read_needs_a_full_batch(
    aero: AerospikeServer,
) -> None:
    """Four read slots, but a read beside the one in flight only for a full batch (6 keys here):
    fewer, larger reads cost less CPU per key than many small ones side by side."""
    l1 = store(aero, unique("mly_merge"), timeout_ms=5000, max_workers=4, max_batch_keys=6)
    try:
        await l1.put_many([(f"k{i}", StoredRow({"v": i}, H)) for i in range(12)])
        reads = l1.reader.reads
        aero.pause()  # the first read waits on the frozen server
        first = asyncio.ensure_future(l1.get_many(["k0"]))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(l1.get_many([f"k{i}"])) for i in range(1, 6)]
        await asyncio.sleep(0)
        assert l1.reader.reads - reads == 1  # five keys wait for the read in flight, though slots are free
        waiting += [asyncio.ensure_future(l1.get_many([f"k{i}"])) for i in range(6, 12)]
        await asyncio.sleep(0)
        assert l1.reader.reads - reads == 2  # a full batch (k1..k6) goes at once; k7..k11 wait
        aero.resume()
        assert await first == [StoredRow({"v": 0}, H)]
        assert await asyncio.gather(*waiting) == [[StoredRow({"v": i}, H)] for i in range(1, 12)]
        assert l1.reader.reads - reads == 3
    finally:
        aero.ensure_up()
        await l1.aclose()


@pytest.mark.asyncio
async def test_only_time_on_the_wire_can_time_out(aero: AerospikeServer) -> None:
    """One read thread, stuck on a frozen server: the lookups waiting for it are misses after half
    of Timeout.Total, not timeouts; only the lookup on the wire times out."""
    l1 = store(aero, unique("mly_wire"), timeout_ms=400, max_workers=1)
    cache = TieredCache(None, l1, None, ttl_ms=60_000, timeout_s=0.4)
    c = cache.counters
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        aero.pause()
        on_wire = asyncio.ensure_future(cache.get_many(["k"], H))
        await asyncio.sleep(0.02)
        waiting = await asyncio.gather(*(cache.get_many([f"w{i}"], H) for i in range(5)))
        assert waiting == [[None]] * 5
        assert (l1.reader.busy_misses, c.timeouts) == (5, 0)  # waiting for the thread is not a timeout
        assert await on_wire == [None]
        assert c.timeouts == 1
    finally:
        aero.ensure_up()
        await cache.aclose()
