"""``TieredCache.read_now``: a store-only lookup answered by callback, against real stores.

It must answer and count exactly as ``get_many`` does over the same store (rows, hits,
misses, stale and foreign entries, timeouts, the breaker), decline what it does not handle,
and hand a lookup whose connection died under it back to ``get_many`` (which retries it)
instead of counting an outage. Faults are real: a paused server (SIGSTOP), a connection
killed by the server (``CLIENT KILL``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aerospike_server import NAMESPACE as AEROSPIKE_NAMESPACE
from cache.conftest import redis_store
from cache.test_tiered import TIMEOUT_S, make_cache
from redis_server import TEST_TIMEOUT_MS

from mly._native.mru import MRUCache
from mly.cache import TieredCache
from mly.cache.base import AsyncStore, StoredRow
from mly.cache.breaker import BreakerState

FaultyStore = Any
Servers = dict[str, Any]
Make = Callable[[], AsyncStore]

H = 1234567890123
OTHER = -42


@pytest.fixture
def make(store_kind: str, request: pytest.FixtureRequest) -> Make:
    """Stores of ``store_kind`` on one set or prefix, as the server builds them: Aerospike with
    row JSON and its native lookups (the only Aerospike path ``read_now`` takes)."""
    if store_kind == "redis":
        server = request.getfixturevalue("redis")["l1"]
        return lambda: redis_store(server)
    from mly.cache.aerospike import AerospikeStore

    aerospike = request.getfixturevalue("aerospike_l1")
    dataset = f"mly_rn_{uuid.uuid4().hex[:8]}"

    def make_aerospike() -> AsyncStore:
        store = AerospikeStore.from_connection(
            aerospike.connection(TEST_TIMEOUT_MS), namespace=AEROSPIKE_NAMESPACE, dataset=dataset, ttl_ms=60_000,
            name="aerospike:l1", json_rows=True, native_reads=True)
        assert store.lookups is not None
        return store

    return make_aerospike


async def read(cache: TieredCache, keys: list[str], dict_hash: int = H) -> tuple[Any, int]:
    """``read_now``'s outcome (asserting it started and answered later, never at once)."""
    future: asyncio.Future[tuple[Any, int]] = asyncio.get_running_loop().create_future()
    assert cache.read_now(keys, dict_hash, lambda rows, hits: future.set_result((rows, hits)))
    assert not future.done()  # never from inside read_now: the caller sets up first
    return await future


async def warmed(cache: TieredCache) -> None:
    """One common lookup first: it opens the store's lookup connection (``read_now`` never connects)."""
    await cache.get_many(["warm-up"], H)


def counted(cache: TieredCache) -> dict[str, Any]:
    stats = cache.stats()
    return {k: stats[k] for k in ("hits_l1", "misses", "stale", "errors", "timeouts", "l1_breaker")}


@pytest.mark.asyncio
async def test_rows_and_counters_are_those_of_get_many(make: Make) -> None:
    l1 = make()
    twin_store = make()  # the same records, read by a second cache the common way
    ours, common = make_cache(l1, memory=False), make_cache(twin_store, memory=False)
    try:
        await l1.put_many([("a", StoredRow({"v": 1}, H)), ("b", StoredRow({"v": 2}, H)),
                           ("old", StoredRow({"v": 3}, OTHER))])
        await warmed(ours)
        await warmed(common)
        keys = ["b", "missing", "a", "old", "a"]
        rows, hits = await read(ours, keys)
        assert rows == await common.get_many(keys, H) == [b'{"v":2}', None, b'{"v":1}', None, b'{"v":1}']
        assert hits == 3
        assert counted(ours) == counted(common)
        assert counted(ours)["stale"] == 1
    finally:
        await ours.aclose()
        await common.aclose()


@pytest.mark.asyncio
async def test_entries_written_before_a_reload_are_refused_as_by_get_many(make: Make) -> None:
    l1 = make()
    cache = make_cache(l1, memory=False)
    try:
        await l1.put_many([("a", StoredRow({"v": 1}, H))])
        await warmed(cache)
        assert await read(cache, ["a"]) == ([b'{"v":1}'], 1)
        cache.forget_older_entries()  # the model changed, its dictionary hash did not
        assert await read(cache, ["a"]) == ([None], 0)
        assert await cache.get_many(["a"], H) == [None]
        assert cache.counters.stale == 2
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_caches_it_does_not_serve_are_declined(make: Make) -> None:
    with_memory = make_cache(make())
    two_tiers = make_cache(make(), make(), memory=False)
    no_store = TieredCache(MRUCache(1 << 20), None, None, ttl_ms=60_000, timeout_s=TIMEOUT_S)
    try:
        for cache in (with_memory, two_tiers, no_store):
            await cache.get_many(["warm-up"], H)
            assert not cache.read_now(["a"], H, lambda rows, hits: pytest.fail("answered"))
        single = make_cache(make(), memory=False)
        try:
            await warmed(single)
            assert not single.read_now([], H, lambda rows, hits: pytest.fail("answered"))
        finally:
            await single.aclose()
    finally:
        for cache in (with_memory, two_tiers, no_store):
            await cache.aclose()


@pytest.mark.asyncio
async def test_a_redis_lookup_connection_not_open_yet_is_declined(redis: Servers) -> None:
    cache = make_cache(redis_store(redis["l1"]), memory=False)
    try:
        assert not cache.read_now(["a"], H, lambda rows, hits: pytest.fail("answered"))  # nothing opened it
        await warmed(cache)
        assert await read(cache, ["a"]) == ([None], 0)
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_a_paused_store_times_out_counted_as_get_many_counts_it(faulty_store: FaultyStore, make: Make) -> None:
    server = faulty_store.server
    l1 = make()
    cache = make_cache(l1, memory=False)
    c = cache.counters
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        await warmed(cache)
        assert await read(cache, ["k"]) == ([b'{"v":1}'], 1)
        server.pause()
        started = time.monotonic()
        assert await read(cache, ["k", "j"]) == ([None, None], 0)
        waited = time.monotonic() - started
        assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 1.0
        assert (c.timeouts, c.misses) == (1, 3)  # the warm-up's miss, then both keys
        assert cache.l1 is not None
        assert cache.l1.breaker.failures == 1
        while cache.l1.breaker.state is BreakerState.CLOSED:  # more timeouts open it
            assert await read(cache, ["k"]) == ([None], 0)
        assert not cache.read_now(["k"], H, lambda rows, hits: pytest.fail("answered"))  # open: the common path
        assert await cache.get_many(["k"], H) == [None]
        assert c.breaker_open_skips == 1
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_a_reply_after_the_deadline_is_dropped_and_the_next_lookup_is_answered(
    faulty_store: FaultyStore, make: Make
) -> None:
    server = faulty_store.server
    l1 = make()
    cache = make_cache(l1, memory=False)
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H)), ("j", StoredRow({"v": 2}, H))])
        await warmed(cache)
        server.pause()
        assert await read(cache, ["k"]) == ([None], 0)
        server.resume()  # the late reply to that lookup arrives now: nobody takes it for another
        for _ in range(50):
            if cache.read_now(["j"], H, lambda rows, hits: None):
                break
            await asyncio.sleep(0.05)  # the connection that stalled is being replaced
        await asyncio.sleep(0.2)
        rows = await cache.get_many(["j", "k"], H)
        assert rows == [b'{"v":2}', b'{"v":1}']
        assert await read(cache, ["j"]) == ([b'{"v":2}'], 1)
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_a_connection_killed_under_the_command_is_retried_not_counted(redis: Servers) -> None:
    """The server dropped the lookup connection, and this loop has not seen it yet: the command
    goes out on the dead socket. ``get_many`` retries that on a fresh connection, and so does
    ``read_now`` (within its deadline), instead of counting an outage."""
    l1 = redis_store(redis["l1"])
    cache = make_cache(l1, memory=False)
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        await warmed(cache)
        with redis["l1"].client() as r:  # blocking: the loop does not run, so it learns of it only later
            killed = r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed >= 1
        time.sleep(0.05)  # the close has reached this host's socket, not yet the loop
        assert await read(cache, ["k"]) == ([b'{"v":1}'], 1)
        c = cache.counters
        assert (c.errors, c.timeouts) == (0, 0)
        assert cache.l1 is not None and cache.l1.breaker.failures == 0
        assert await read(cache, ["k"]) == ([b'{"v":1}'], 1)
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_a_value_that_is_not_an_entry_is_an_error_and_a_miss(redis: Servers) -> None:
    l1 = redis_store(redis["l1"])
    cache = make_cache(l1, memory=False)
    try:
        with redis["l1"].client() as r:
            r.set("ns:ds:k", "not an entry")
        await warmed(cache)
        assert await read(cache, ["k"]) == ([None], 0)
        assert (cache.counters.errors, cache.counters.misses) == (1, 2)
        assert cache.l1 is not None and cache.l1.breaker.state is BreakerState.CLOSED
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_each_read_gets_its_whole_timeout_behind_answered_and_expired_ones(
    faulty_store: FaultyStore, make: Make
) -> None:
    """A read started later does not expire with an earlier one, and reads answered before leave no
    timer behind that could end a later read early."""
    server = faulty_store.server
    cache = make_cache(make(), memory=False)
    loop = asyncio.get_running_loop()
    try:
        await warmed(cache)
        for _ in range(5):
            assert await read(cache, ["a"]) == ([None], 0)  # answered: left for the timer to pass over
        server.pause()
        ended: dict[str, float] = {}
        started = {"first": loop.time()}
        assert cache.read_now(["a"], H, lambda rows, hits: ended.setdefault("first", loop.time()))
        await asyncio.sleep(TIMEOUT_S / 2)
        started["second"] = loop.time()
        assert cache.read_now(["b"], H, lambda rows, hits: ended.setdefault("second", loop.time()))
        while len(ended) < 2:
            await asyncio.sleep(0.02)
        for name in ("first", "second"):
            assert ended[name] - started[name] >= TIMEOUT_S - 0.002, name
        assert ended["second"] > ended["first"]
        assert cache.counters.timeouts == 2
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_a_lookup_whose_stalled_connection_is_replaced_keeps_its_deadline(redis: Servers) -> None:
    """Redis paused: a later lookup finds the connection silent for longer than its socket
    timeout and fails it (``PipelinedConnection._stalled``). The lookup that waited on it is sent
    once more, as ``get_many``'s call would, within its own deadline: one timeout counted, every
    row a miss, not a fresh lookup (``RETRY``) that may wait a whole timeout again."""
    server = redis["l1"]
    l1 = redis_store(server, timeout_ms=100)  # a connection silent this long is replaced
    cache = make_cache(l1, memory=False)
    c = cache.counters
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        await warmed(cache)
        server.pause()
        waiting = asyncio.ensure_future(read(cache, ["k"]))
        await asyncio.sleep(TIMEOUT_S * 2 / 3)
        assert await cache.get_many(["j"], H) == [None]  # finds the connection stalled
        assert await waiting == ([None], 0)
        assert (c.timeouts, c.errors, c.misses) == (2, 0, 3)  # the warm-up's miss, then k and j
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_a_lookup_under_a_closing_cache_is_handed_back_not_counted(faulty_store: FaultyStore, make: Make) -> None:
    """A cache closed while a lookup waits (a reload replaced its datastore): the lookup is handed
    back (``RETRY``, to be looked up the common way, by the current cache) and no error, timeout or
    breaker failure is counted, since nothing is wrong with the store."""
    from mly.cache.read_now import RETRY

    server = faulty_store.server
    cache = make_cache(make(), memory=False)
    try:
        await warmed(cache)
        server.pause()  # no reply comes: the lookup is still waiting when the cache closes
        answered: asyncio.Future[tuple[Any, int]] = asyncio.get_running_loop().create_future()
        assert cache.read_now(["k"], H, lambda rows, hits: answered.set_result((rows, hits)))
        await asyncio.sleep(0.05)
        await cache.aclose(timeout_s=0.1)
        assert await asyncio.wait_for(answered, TIMEOUT_S * 3) == (RETRY, 0)
        c = cache.counters
        assert (c.errors, c.timeouts) == (0, 0)
        assert cache.l1 is not None and cache.l1.breaker.failures == 0
    finally:
        server.ensure_up()
        await cache.aclose()
