"""TieredCache over real stores: read order, upward copies, stale hashes, write-behind, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest

from mly._native.mru import KNOWN_MISSING, MRUCache
from mly.cache import CacheCounters, TieredCache, build_datastore
from mly.cache.base import AsyncStore, StoredRow
from mly.cache.breaker import BreakerState, CircuitBreaker, ExponentialBackoff
from mly.cache.redis import RedisStore
from mly.config.schema import CacheConfig, Config, Datastore, L2Reference, Timeout
from mly.errors import ConfigError

MakeStore = Callable[..., AsyncStore]
Servers = dict[str, Any]  # name -> conftest.RedisServer
FaultyStore = Any  # conftest.FaultyStore: .kind, .server (kill/pause/resume/restart), .make(timeout_ms=...)

H = 1234567890123
OTHER = -42
TIMEOUT_S = 0.3
BACKOFF_S = 0.3


def fast_breaker(name: str) -> CircuitBreaker:
    return CircuitBreaker(ExponentialBackoff(base_s=BACKOFF_S, cap_s=2.0, jitter=0.0), name=name)


def make_cache(l1: AsyncStore | None, l2: AsyncStore | None = None, *, memory: bool = True,
               **kwargs: Any) -> TieredCache:
    return TieredCache(MRUCache(1 << 20) if memory else None, l1, l2, ttl_ms=60_000, timeout_s=TIMEOUT_S,
                       breaker_factory=fast_breaker, **kwargs)


def rows(n: int, prefix: str = "k") -> list[tuple[str, Any, bytes]]:
    out = []
    for i in range(n):
        row = {"i": i, "s": f"v{i}"}
        out.append((f"{prefix}{i}", row, orjson.dumps(row)))
    return out


@pytest.mark.asyncio
async def test_read_order_and_upward_copy(make_store: MakeStore) -> None:
    l1, l2 = make_store("l1"), make_store("l2")
    cache = make_cache(l1, l2)
    try:
        await l2.put_many([("a", StoredRow({"y": 2, "x": 1}, H)), ("b", StoredRow({"v": "l2"}, H))])
        await l1.put_many([("b", StoredRow({"v": "l1"}, H))])
        got = await cache.get_many(["a", "b", "c"], H)
        assert got == [b'{"x":1,"y":2}', b'{"v":"l1"}', None]  # L1 before L2; fields sorted
        c = cache.counters
        assert (c.hits_memory, c.hits_l1, c.hits_l2, c.misses) == (0, 1, 1, 1)
        assert cache.memory is not None and cache.memory.get("a", H) == b'{"x":1,"y":2}'
        assert await cache.flush()
        assert await l1.get_many(["a"]) == [StoredRow({"x": 1, "y": 2}, H)]  # L2 hit copied to L1
        assert c.writes == 1
        assert await cache.get_many(["a", "b", "c"], H) == got
        assert (c.hits_memory, c.hits_l1, c.hits_l2, c.misses) == (2, 1, 1, 2)
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_copies_keep_the_time_their_entry_has_left(make_store: MakeStore) -> None:
    """An entry written once to L2 with a 2 s TTL is gone from every tier after 2 s, though
    memory and L1 (60 s each) got copies of it on the way."""
    l1, l2 = make_store("l1"), make_store("l2", ttl_ms=2_000)
    cache = make_cache(l1, l2)
    try:
        await l2.put_many([("a", StoredRow({"x": 1}, H))])
        written = time.monotonic()
        assert await cache.get_many(["a"], H) == [b'{"x":1}']
        assert await cache.flush()
        [copy] = await l1.get_many(["a"])
        assert copy is not None and copy.ttl_ms is not None and 0 < copy.ttl_ms <= 2_000  # not 60 s
        assert await cache.get_many(["a"], H) == [b'{"x":1}']  # from memory now
        assert cache.counters.hits_memory == 1
        await asyncio.sleep(max(0.0, written + 3.1 - time.monotonic()))
        assert await cache.get_many(["a"], H) == [None]  # expired in memory and L1 as in L2
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_put_writes_memory_now_and_stores_later(make_store: MakeStore) -> None:
    l1, l2 = make_store("l1"), make_store("l2")
    l2_read_only = make_store("l2", read_only=True)
    cache = make_cache(l1, l2_read_only)
    try:
        cache.put_many([("k", {"b": 1.5, "a": [1, 2]}, b'{"b":1.5,"a":[1,2]}')], H)
        assert cache.memory is not None and cache.memory.get("k", H) == b'{"b":1.5,"a":[1,2]}'
        assert await cache.get_many(["k"], H) == [b'{"b":1.5,"a":[1,2]}']
        assert cache.counters.hits_memory == 1
        assert await cache.flush()
        assert await l1.get_many(["k"]) == [StoredRow({"b": 1.5, "a": [1, 2]}, H)]
        assert await l2.get_many(["k"]) == [None]  # read-only L2 is never written
        assert cache.counters.writes == 1
    finally:
        await cache.aclose()
        await l2.aclose()


@pytest.mark.asyncio
async def test_stale_hash_is_never_served(make_store: MakeStore) -> None:
    l1, l2 = make_store("l1"), make_store("l2")
    cache = make_cache(l1, l2)
    try:
        await l1.put_many([("old", StoredRow({"v": 1}, H)), ("mixed", StoredRow({"v": "stale"}, H))])
        await l2.put_many([("mixed", StoredRow({"v": "fresh"}, OTHER))])
        assert await cache.get_many(["old", "mixed"], OTHER) == [None, b'{"v":"fresh"}']
        c = cache.counters
        assert (c.stale, c.misses, c.hits_l2) == (2, 1, 1)  # both L1 entries are stale
        assert cache.memory is not None and cache.memory.get("old", OTHER) is None
        # The memory tier applies the same rule to its own entries.
        cache.put_many([("mem", {"v": 2}, b'{"v":2}')], H)
        assert await cache.get_many(["mem"], OTHER) == [None]
        assert await cache.get_many(["old"], H) == [b'{"v":1}']
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_queue_overflow_is_counted(make_store: MakeStore) -> None:
    l1 = make_store("l1")
    cache = make_cache(l1, write_queue_size=10)
    try:
        cache.put_many(rows(25), H)
        c = cache.counters
        assert (c.write_dropped, c.write_queue_depth) == (15, 10)
        assert c.as_dict()["write_queue_depth"] == 10
        assert await cache.flush()
        assert (c.writes, c.write_queue_depth) == (10, 0)
        found = await l1.get_many([key for key, _, _ in rows(25)])
        assert sum(r is not None for r in found) == 10
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_aclose_drains_the_queue(make_store: MakeStore) -> None:
    l1, reader = make_store("l1"), make_store("l1")
    cache = make_cache(l1)
    items = rows(300)
    cache.put_many(items, H)
    await cache.aclose()
    try:
        assert cache.counters.writes == 300
        found = await reader.get_many([key for key, _, _ in items])
        assert found[299] == StoredRow({"i": 299, "s": "v299"}, H)
        assert all(found)
    finally:
        await reader.aclose()


@pytest.mark.asyncio
async def test_negative_entries_skip_the_stores_for_retry_time(make_store: MakeStore) -> None:
    l1 = make_store("l1")
    cache = make_cache(l1, retry_time_ms=300)
    try:
        assert await cache.get_many(["k"], H) == [None]
        assert cache.memory is not None and cache.memory.get("k", H) is KNOWN_MISSING
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        assert await cache.get_many(["k"], H) == [None]
        assert cache.counters.negative_hits == 1
        await asyncio.sleep(0.4)
        assert await cache.get_many(["k"], H) == [b'{"v":1}']
        cache.put_many([("z", {"v": 0}, b'{"v":0}')], H)  # a computed row replaces a marker
        assert await cache.get_many(["z"], H) == [b'{"v":0}']
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_row_computed_while_the_lookup_waited_is_found_in_memory(make_store: MakeStore) -> None:
    """A request whose store lookup outlasts another request's computation of the same row reuses it."""
    cache = make_cache(make_store("l1", read_only=True))  # read-only: the row can only come from memory
    try:
        lookup = asyncio.create_task(cache.get_many(["k"], H))
        await asyncio.sleep(0)  # the lookup has missed memory and now waits on the store
        assert not lookup.done()
        cache.put_many([("k", {"v": 1}, b'{"v":1}')], H)  # meanwhile another request computed the row
        assert await lookup == [b'{"v":1}']
        assert (cache.counters.hits_memory, cache.counters.misses) == (1, 0)
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_put_from_another_thread(make_store: MakeStore) -> None:
    l1 = make_store("l1")
    cache = make_cache(l1, memory=False)
    try:
        cache.start()
        await asyncio.to_thread(cache.put_many, rows(5), H)
        assert await cache.flush()
        assert cache.counters.writes == 5
        assert await cache.get_many(["k4"], H) == [b'{"i":4,"s":"v4"}']
    finally:
        await cache.aclose()


# ---- faults caused for real on the server processes (SIGKILL, SIGSTOP), for both store kinds


async def wait_for_probe(breaker: CircuitBreaker) -> None:
    await asyncio.sleep(max(0.0, breaker.retry_at - time.monotonic()) + 0.02)


@pytest.mark.asyncio
async def test_killed_l1_misses_fast_breaker_opens_then_probe_closes(faulty_store: FaultyStore) -> None:
    server = faulty_store.server
    l1 = faulty_store.make()
    cache = make_cache(l1, memory=False)
    c = cache.counters
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        assert await cache.get_many(["k"], H) == [b'{"v":1}']
        server.kill()
        started = time.monotonic()
        assert await cache.get_many(["k"], H) == [None]
        assert time.monotonic() - started < TIMEOUT_S + 1.0
        assert cache.l1 is not None and cache.l1.breaker.state is BreakerState.OPEN
        failures = c.errors + c.timeouts
        assert failures == 1
        for _ in range(20):  # while open: instant misses, no I/O at all
            assert await cache.get_many(["k"], H) == [None]
        assert (c.errors + c.timeouts, c.breaker_open_skips, c.misses) == (1, 20, 21)
        cache.put_many(rows(3), H)
        assert await cache.flush()
        assert (c.write_dropped, c.breaker_open_skips, c.writes) == (3, 21, 0)

        server.restart()  # empty: nothing is persisted
        await l1.put_many([("k", StoredRow({"v": 2}, H))])  # the store itself has no breaker
        await wait_for_probe(cache.l1.breaker)
        assert await cache.get_many(["k"], H) == [b'{"v":2}']  # the probe
        assert cache.l1.breaker.state is BreakerState.CLOSED
        assert await cache.get_many(["k"], H) == [b'{"v":2}']
        assert (c.hits_l1, c.errors + c.timeouts, c.breaker_open_skips) == (3, 1, 21)
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_paused_l1_times_out_and_l2_still_answers(
    faulty_store: FaultyStore, redis: Servers, new_redis_store: MakeStore
) -> None:
    # L2 is always a Redis server, so the Aerospike variant is also Aerospike L1 + Redis L2.
    server = faulty_store.server
    l1, l2 = faulty_store.make(), new_redis_store(redis["l2"])
    cache = make_cache(l1, l2)
    c = cache.counters
    try:
        await l1.put_many([("x", StoredRow({"v": 0}, H))])  # opens the connection before the fault
        await l2.put_many([("k", StoredRow({"v": "l2"}, H))])
        server.pause()
        started = time.monotonic()
        assert await cache.get_many(["k", "absent"], H) == [b'{"v":"l2"}', None]
        assert time.monotonic() - started < TIMEOUT_S + 1.0  # bounded by the timeout, not by the stopped server
        assert (c.timeouts, c.hits_l2, c.misses) == (1, 1, 1)
        assert cache.l1 is not None and cache.l1.breaker.state is BreakerState.OPEN
        assert await cache.flush()
        assert c.write_dropped == 1  # the L2 -> L1 copy meets the open breaker
        server.resume()
        await wait_for_probe(cache.l1.breaker)
        assert await cache.get_many(["x"], H) == [b'{"v":0}']
        assert cache.l1.breaker.state is BreakerState.CLOSED
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_lookups_in_flight_when_the_store_stops_count_as_one_failure(faulty_store: FaultyStore) -> None:
    """Twenty lookups time out together: one failure, one short interval, then the probe recovers."""
    server = faulty_store.server
    l1 = faulty_store.make()
    cache = TieredCache(None, l1, None, ttl_ms=60_000, timeout_s=TIMEOUT_S)  # the default breaker
    try:
        await l1.put_many([(f"k{i}", StoredRow({"v": i}, H)) for i in range(20)])
        assert await cache.get_many(["k0"], H) == [b'{"v":0}']
        server.pause()
        found = await asyncio.gather(*(cache.get_many([f"k{i}"], H) for i in range(20)))
        assert found == [[None]] * 20
        assert cache.l1 is not None
        breaker = cache.l1.breaker
        unanswered = cache.counters.timeouts
        if faulty_store.kind == "aerospike":  # lookups waiting for one of its 4 threads are misses, not timeouts
            unanswered += l1.reader.busy_misses  # type: ignore[attr-defined]
        assert (breaker.failures, breaker.opened, unanswered) == (1, 1, 20)
        assert breaker.retry_at - breaker.opened_at <= 1.0
        server.resume()
        await wait_for_probe(breaker)
        assert await cache.get_many(["k5"], H) == [b'{"v":5}']
        assert breaker.state is BreakerState.CLOSED
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_lookups_sharing_a_connect_that_outlives_the_deadline_all_miss(redis: Servers) -> None:
    """Go's default timeouts let a connect (800 ms) outlive a lookup's deadline (450 ms). The first
    lookup's deadline stops it while it connects to a paused Redis; the lookups that joined its
    connect must each miss at their own deadline, not be handed its cancellation (which fails
    their requests), and the Redis is used again once it answers."""
    server = redis["l1"]
    timeout = Timeout(connection=3000, socket=300, total=300)
    l1 = RedisStore.from_connection(replace(server.connection(), timeout=timeout), namespace="ns", dataset="ds",
                                    ttl_ms=60_000, name="redis:slow-connect")
    cache = make_cache(l1, memory=False)
    try:
        await l1.put_many([(f"k{i}", StoredRow({"v": i}, H)) for i in range(5)])  # not the lookup connection
        server.pause()

        async def lookup(i: int) -> Any:
            await asyncio.sleep(0.04 * i)  # later lookups join the connect the first one started
            return await cache.get_many([f"k{i}"], H)

        found = await asyncio.gather(*(lookup(i) for i in range(5)), return_exceptions=True)
        assert found == [[None]] * 5
        assert cache.counters.timeouts == 5
        server.resume()
        assert cache.l1 is not None
        await wait_for_probe(cache.l1.breaker)
        assert await cache.get_many(["k3"], H) == [b'{"v":3}']
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_replies_to_lookups_that_gave_up_never_reach_later_lookups(
    redis: Servers, new_redis_store: MakeStore
) -> None:
    """Lookups share one pipelined connection and Redis answers in order. Lookups that gave up
    while Redis was paused leave their commands in the socket; the lookups sent after them, still
    while paused, must each get their own row once Redis answers them all."""
    server = redis["l1"]
    l1 = new_redis_store(server)
    try:
        await l1.put_many([(f"k{i}", StoredRow({"v": i}, H)) for i in range(40)])
        assert (await l1.get_rows(["k0"], H)).rows == [b'{"v":0}']  # the lookup connection is open
        server.pause()
        for i in range(0, 10, 2):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(l1.get_rows([f"k{i}", f"k{i + 1}"], H), 0.01)
        later = [asyncio.ensure_future(l1.get_rows([f"k{i}"], H)) for i in range(20, 40)]
        await asyncio.sleep(0.05)
        server.resume()
        found = await asyncio.wait_for(asyncio.gather(*later), 5)
        assert [read.rows for read in found] == [[b'{"v":%d}' % i] for i in range(20, 40)]
    finally:
        server.ensure_up()
        await l1.aclose()


class FrozenPathRelay:
    """A TCP relay on loopback to a real Redis whose open connections can be frozen: bytes stop
    flowing both ways while both sockets stay open, as on a network path that died without a reset
    (an address moved to a new machine, a dropped NAT entry). A test double of the network, since
    loopback cannot lose packets; connections opened after the freeze flow again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(1 << 16):
                sink.write(data)

        self._pumps += [asyncio.ensure_future(pump(reader, up_writer)), asyncio.ensure_future(pump(up_reader, writer))]

    def freeze(self) -> None:
        """Nothing more crosses the connections open now; they stay open."""
        for task in self._pumps:
            task.cancel()
        self._pumps.clear()

    async def aclose(self) -> None:
        self.freeze()
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.mark.asyncio
async def test_a_connection_whose_replies_stopped_is_replaced(redis: Servers) -> None:
    """A network path that dies without a reset leaves the lookup connection open with nobody at the
    other end; TCP would notice only after many minutes. Once its oldest command has waited longer
    than a lookup may, lookups must go over a new connection, not into the dead one for ever."""
    relay = FrozenPathRelay(redis["l1"].port)
    await relay.start()
    l1 = RedisStore.from_connection(replace(redis["l1"].connection(), port=relay.port), namespace="ns",
                                    dataset="ds", ttl_ms=60_000, name="redis:relayed")
    cache = make_cache(l1, memory=False)
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        assert await cache.get_many(["k"], H) == [b'{"v":1}']
        relay.freeze()
        assert await cache.get_many(["k"], H) == [None]  # no answer within the deadline
        assert cache.counters.timeouts == 1
        started = time.monotonic()
        while await cache.get_many(["k"], H) != [b'{"v":1}']:
            assert time.monotonic() - started < 5, "lookups still go into the dead connection"
            await asyncio.sleep(0.05)
    finally:
        await cache.aclose()
        await relay.aclose()


@pytest.mark.asyncio
async def test_restarted_store_serves_at_once_through_stale_connections(faulty_store: FaultyStore) -> None:
    """Pooled connections to the killed process are replaced on first use, not counted as an outage."""
    server = faulty_store.server
    l1 = faulty_store.make()
    cache = make_cache(l1, memory=False)
    try:
        await l1.put_many([("warm", StoredRow({"v": 0}, H))])
        # Several lookups at once open several pooled connections.
        assert await asyncio.gather(*(cache.get_many(["warm"], H) for _ in range(8))) == [[b'{"v":0}']] * 8
        server.restart()
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        found = await asyncio.gather(*(cache.get_many(["k"], H) for _ in range(8)))
        assert found == [[b'{"v":1}']] * 8
        c = cache.counters
        assert (c.errors, c.timeouts, c.hits_l1) == (0, 0, 16)
        assert cache.l1 is not None and cache.l1.breaker.opened == 0
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_write_behind_never_blocks_on_a_stuck_store(faulty_store: FaultyStore) -> None:
    server = faulty_store.server
    l1 = faulty_store.make(timeout_ms=1000)
    cache = make_cache(l1)
    items = rows(200)
    try:
        await l1.get_many(["warm"])
        server.pause()
        started = time.monotonic()
        cache.put_many(items, H)
        # No I/O on the caller's path: one store round trip would already take TIMEOUT_S.
        assert time.monotonic() - started < TIMEOUT_S
        assert await cache.get_many(["k0", "k199"], H) == [items[0][2], items[199][2]]  # memory, no I/O
        await asyncio.sleep(0.1)  # the drainer's write is now waiting on the stopped server
        server.resume()
        assert await cache.flush(5.0)
        assert (cache.counters.writes, cache.counters.write_errors) == (200, 0)
        found = await l1.get_many(["k0", "k199"])
        assert found == [StoredRow({"i": 0, "s": "v0"}, H), StoredRow({"i": 199, "s": "v199"}, H)]
    finally:
        server.ensure_up()
        await cache.aclose()


@pytest.mark.asyncio
async def test_aclose_gives_up_on_a_stuck_store_in_time(faulty_store: FaultyStore) -> None:
    server = faulty_store.server
    l1 = faulty_store.make()
    cache = make_cache(l1)
    try:
        await l1.get_many(["warm"])
        server.pause()
        cache.put_many(rows(300), H)  # 256 go out in the first batch and hang, 44 wait
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await cache.aclose(timeout_s=0.3)
        assert time.monotonic() - started < 0.3 + 1.0  # gives up at its timeout, whatever the store does
        c = cache.counters
        assert (c.write_errors + c.write_dropped, c.writes) == (300, 0)  # each row accounted for once
        assert cache.counters.write_queue_depth == 0
    finally:
        server.ensure_up()


@pytest.mark.asyncio
async def test_a_value_that_is_not_an_entry_is_a_miss_not_an_outage(
    redis: Servers, new_redis_store: MakeStore
) -> None:
    l1 = new_redis_store(redis["l1"])
    cache = make_cache(l1, memory=False)
    with redis["l1"].client() as r:
        r.set("ns:ds:k", "not an entry")  # another program's string under mly's prefix
        r.hset("ns:ds:old", mapping={"v": "1", "dictHash": str(H)})  # the hash layout earlier versions wrote
    try:
        assert await cache.get_many(["k", "old"], H) == [None, None]
        assert cache.counters.errors == 1  # the foreign string; the old entry is only a miss
        assert cache.l1 is not None and cache.l1.breaker.state is BreakerState.CLOSED
        stats = cache.stats()
        assert (stats["l1_breaker"], stats["errors"], stats["misses"]) == ("closed", 1, 2)
        assert "memory" not in stats
        cache.put_many([("old", {"v": 2}, b'{"v":2}')], H)  # the next write replaces an old entry
        assert await cache.flush()
        assert await cache.get_many(["old"], H) == [b'{"v":2}']
    finally:
        await cache.aclose()


# ---- factory


@pytest.mark.asyncio
async def test_build_datastore_from_config(redis: Servers) -> None:
    config = Config(
        connections=(redis["l1"].connection(), redis["l2"].connection(400)),
        datastores=(
            Datastore(id="ds", cache=CacheConfig(size_mb=2), connection="l1", namespace="ns", dataset="ds",
                      time_to_live_ms=5000, l2=L2Reference(connection="l2", namespace="ns", dataset="ds2")),
        ),
    )
    counters = CacheCounters()
    cache = build_datastore(config.datastores[0], config, counters=counters)
    try:
        assert cache.memory is not None and cache.memory.max_bytes == 2 << 20
        assert cache.l1 is not None and cache.l2 is not None
        assert (cache.l1.store.name, cache.l2.store.name) == ("redis:l1:ds", "redis:l2:ds2")
        assert (cache.ttl_ms, cache.timeout_s, cache.retry_time_ms) == (5000, 0.4, 5000)
        cache.put_many([("k", {"v": 1}, b'{"v":1}')], H)
        assert await cache.flush()
        assert counters.writes == 2
        with redis["l2"].client() as r:
            assert 4000 < r.pttl("ns:ds2:k") <= 5000  # L2 written with the L1 TTL (Go)
    finally:
        await cache.aclose()


def test_build_datastore_errors_name_the_key(redis: Servers) -> None:
    config = Config(connections=(redis["l1"].connection(),))
    with pytest.raises(ConfigError, match=r"Datastores\[ds\]\.Connection: unknown connection 'nope'"):
        build_datastore(Datastore(id="ds", connection="nope", dataset="d"), config)
    with pytest.raises(ConfigError, match=r"Datastores\[ds\]\.Storable: unknown storable 'zzz'"):
        build_datastore(Datastore(id="ds", storable="zzz"), config)
    memory_only = build_datastore(Datastore(id="m", cache=CacheConfig()), config)
    assert memory_only.memory is not None and memory_only.l1 is None and memory_only.l2 is None
    assert memory_only.memory.max_bytes == 1 << 20


def test_build_datastore_aerospike_is_lazy() -> None:
    pytest.importorskip("aerospike", reason="pip install 'mly[aerospike]'")
    from mly.cache.aerospike import AerospikeStore
    from mly.config.schema import Connection

    config = Config(connections=(Connection(id="a", hostnames="127.0.0.1", port=1),))
    cache = build_datastore(Datastore(id="ds", connection="a", namespace="test", dataset="d"), config)
    assert cache.l1 is not None and isinstance(cache.l1.store, AerospikeStore)
    assert cache.memory is None
    asyncio.run(cache.aclose())
