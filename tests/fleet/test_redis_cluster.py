"""Redis Cluster as a store, on a real 3-master + 3-replica cluster on loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from redis_server import decode_entry

from mly.cache.base import StoredRow
from mly.cache.redis import RedisStore, SyncRedisStore, entry_key, sync_redis_client
from mly.config import parse_config
from mly.errors import ConfigError

H = 987654321


def rows(n: int, prefix: str = "k") -> list[tuple[str, StoredRow]]:
    return [(f"{prefix}{i}", StoredRow({"i": i, "s": f"v{i}"}, H)) for i in range(n)]


@pytest.fixture
def cluster(redis_cluster: Any) -> Any:
    redis_cluster.wait_ok()
    redis_cluster.flush()
    return redis_cluster


@pytest.mark.asyncio
async def test_a_batch_spans_every_master_in_one_call(cluster: Any) -> None:
    """200 keys land on all three masters; one ``get_many`` reads them back (no cross-slot error)."""
    store = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    try:
        items = rows(200)
        await store.put_many(items)
        got = await store.get_many([key for key, _ in items] + ["absent"])
        assert got == [stored for _, stored in items] + [None]
        assert all(row is not None and 0 < (row.ttl_ms or 0) <= 60_000 for row in got[:-1])
        per_master = [node.client().dbsize() for node in cluster.masters()]
        assert len(per_master) == 3 and all(n > 20 for n in per_master)  # spread over the slots
        routed = sync_redis_client(cluster.connection(seeds=6))  # the single-Redis layout, key for key
        try:
            entry = decode_entry(routed.get(entry_key("ns", "ds", "k7")))
            assert entry is not None and entry[1] == H and entry[0]["s"] == "v7"
        finally:
            routed.close()
    finally:
        await store.aclose()


def test_the_sync_store_reads_what_the_async_one_wrote(cluster: Any) -> None:
    async def write() -> None:
        store = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
        try:
            await store.put_many(rows(50))
        finally:
            await store.aclose()

    asyncio.run(write())
    store = SyncRedisStore.from_connection(cluster.connection(seeds=3), namespace="ns", dataset="ds", ttl_ms=60_000)
    try:
        assert store.get_many([f"k{i}" for i in range(50)]) == [stored for _, stored in rows(50)]
    finally:
        store.close()


@pytest.mark.asyncio
async def test_a_killed_master_is_an_outage_until_its_replica_takes_over(cluster: Any) -> None:
    from mly._native.mru import MRUCache
    from mly.cache.tiered import TieredCache

    store = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    cache = TieredCache(MRUCache(1 << 20), store, None, ttl_ms=60_000, timeout_s=0.5)
    victim = cluster.masters()[0]
    try:
        await store.put_many(rows(100))
        with victim.client() as r:
            r.execute_command("WAIT", 1, 1000)  # its replica has every row
        victim.kill()
        killed = time.monotonic()
        keys = [f"k{i}" for i in range(100)]
        recovered = None
        while time.monotonic() - killed < 20:
            found = await cache.get_many(keys, H)  # never raises; misses while a slot has no master
            cache.memory.clear()  # type: ignore[union-attr]  # ask the store every time
            if None not in found:
                recovered = time.monotonic() - killed
                break
            await asyncio.sleep(0.1)
        assert recovered is not None, "the replica never took over"
        assert cache.counters.hits_l1 >= 100
    finally:
        await cache.aclose()
        victim.start()  # rejoins from its nodes file, now as a replica
        cluster.wait_ok()


def test_cluster_config_rules() -> None:
    base = {"Models": [{"ID": "m", "URL": "/m", "DataStore": "d"}],
            "Datastores": [{"ID": "d", "Connection": "c", "Dataset": "x", "Namespace": "test"}]}
    for connection, key in (({"Kind": "aerospike", "Cluster": True}, "Connections[0].Cluster"),
                            ({"Kind": "redis", "Cluster": True, "Database": 2}, "Connections[0].Database"),
                            ({"Kind": "aerospike", "Password": "x"}, "Connections[0].Username"),  # both or neither
                            ({"Kind": "redis", "TLSCAFile": "/ca.pem"}, "Connections[0].TLSCAFile")):
        with pytest.raises(ConfigError) as info:
            parse_config({**base, "Connections": [{"ID": "c", "Hostnames": "h:7000", **connection}]})
        assert info.value.key == key
    ok = parse_config({**base, "Connections": [{"ID": "c", "Hostnames": "a:7000,b:7001", "Kind": "redis",
                                                "Cluster": True}]})
    assert ok.connections[0].cluster and ok.connections[0].seeds == [("a", 7000), ("b", 7001)]


def replica_of_master_of(cluster: Any, key: str, timeout_s: float = 20.0) -> Any:
    """The node that replicates the master serving ``key``'s slot. After an earlier test killed a
    master, its restarted node becomes a replica only after a while: wait for one."""
    deadline = time.monotonic() + timeout_s
    while True:
        with cluster.masters()[0].client() as r:
            slot = int(r.execute_command("CLUSTER", "KEYSLOT", key))
            master = next(s[2][2] for s in r.execute_command("CLUSTER", "SLOTS") if int(s[0]) <= slot <= int(s[1]))
            nodes = [line.split() for line in r.execute_command("CLUSTER", "NODES").decode().splitlines()]
        ports = [int(n[1].split("@")[0].rsplit(":", 1)[1]) for n in nodes
                 if n[3].encode() == master and "fail" not in n[2]]
        replicas = [node for node in cluster.nodes if node.port in ports and node.replicating()]
        if replicas:
            return replicas[0]
        assert time.monotonic() < deadline, f"no replica of the master of {key!r} in sync"
        time.sleep(0.2)


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [1, 60])
async def test_lookups_follow_a_manual_failover(cluster: Any, size: int) -> None:
    """After ``CLUSTER FAILOVER`` the old master, now a replica, refuses the ``GET``s of a lookup
    (``MOVED``): the slot map must be read again, so lookups reach the new master."""
    from mly._native.mru import MRUCache
    from mly.cache.tiered import TieredCache

    store = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    cache = TieredCache(MRUCache(1 << 20), store, None, ttl_ms=60_000, timeout_s=0.5)
    promoted = replica_of_master_of(cluster, entry_key("ns", "ds", "k1"))
    items = rows(61)
    keys = [key for key, _ in items][1:1 + size]
    wanted = [b'{"i":%d,"s":"v%d"}' % (i, i) for i in range(1, 1 + size)]
    try:
        await store.put_many(items)  # a manual failover waits until the replica has them
        assert await cache.get_many(keys, H) == wanted  # the slot map is read
        # A manual failover gives up after 5 s when its master is slow to pause (a busy machine):
        # ask again, up to three times, as an operator would.
        for _ in range(3):
            with promoted.client() as r:
                r.execute_command("CLUSTER", "FAILOVER")
            asked = time.monotonic()
            while promoted.role() != "master" and time.monotonic() - asked < 8:
                time.sleep(0.05)
            if promoted.role() == "master":
                break
        assert promoted.role() == "master", "the failover did not happen in three attempts"
        started = time.monotonic()
        cluster.wait_ok()
        recovered = None
        while time.monotonic() - started < 15:
            cache.memory.clear()  # type: ignore[union-attr]  # ask the store every time
            if await cache.get_many(keys, H) == wanted:
                recovered = time.monotonic() - started
                break
            await asyncio.sleep(0.1)
        assert recovered is not None, "lookups never reached the new master"
        with promoted.client() as r:
            assert r.info("commandstats").get("cmdstat_get", {}).get("calls", 0) > 0
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_each_master_is_asked_for_its_own_keys_only(cluster: Any) -> None:
    """A lookup whose keys span many slots of every master sends each master the ``GET``s of the
    keys it serves, lookup after lookup: nothing refused, nothing redirected."""
    store = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    try:
        items = rows(60)
        await store.put_many(items)
        keys = [key for key, _ in items]
        for node in cluster.masters():
            with node.client() as r:
                r.config_resetstat()
        for _ in range(2):
            read = await store.get_rows([*keys, "absent"], H)
            assert read.rows == [b'{"i":%d,"s":"v%d"}' % (i, i) for i in range(60)] + [None]
        gets = []
        for node in cluster.masters():
            with node.client() as r:
                stats = r.info("commandstats").get("cmdstat_get", {})
                served = sum(1 for key in [*keys, "absent"]
                             if r.execute_command("CLUSTER", "KEYSLOT", entry_key("ns", "ds", key))
                             in {slot for start, end in _slot_ranges(r, node.port) for slot in range(start, end + 1)})
            assert (stats.get("rejected_calls", 0), stats.get("failed_calls", 0)) == (0, 0)
            gets.append((stats.get("calls", 0), 2 * served))
        assert all(calls == wanted for calls, wanted in gets) and sum(c for c, _ in gets) == 2 * 61
    finally:
        await store.aclose()


def _slot_ranges(r: Any, port: int) -> list[tuple[int, int]]:
    return [(int(start), int(end)) for start, end, master, *_ in r.execute_command("CLUSTER", "SLOTS")
            if int(master[1]) == port]


@pytest.mark.asyncio
async def test_an_entry_of_the_old_hash_layout_is_a_miss_not_an_outage(cluster: Any) -> None:
    """As on a single Redis, whose ``MGET`` answers nil for it. A one-key lookup, a larger one and
    the blocking store's pipeline all meet it: a miss, the breaker closed."""
    from mly.cache.breaker import BreakerState
    from mly.cache.tiered import TieredCache

    store = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    cache = TieredCache(None, store, None, ttl_ms=60_000, timeout_s=0.5)
    routed = sync_redis_client(cluster.connection(seeds=6))
    blocking = SyncRedisStore.from_connection(cluster.connection(seeds=3), namespace="ns", dataset="ds",
                                              ttl_ms=60_000)
    try:
        items = rows(20)
        await store.put_many(items)
        routed.hset(entry_key("ns", "ds", "old"), mapping={"i": "1", "dictHash": str(H)})
        for _ in range(3):
            assert await cache.get_many(["old"], H) == [None]
        found = await cache.get_many(["old", *(key for key, _ in items)], H)
        assert found[0] is None and None not in found[1:]
        c = cache.counters
        assert (c.errors, c.timeouts, c.hits_l1, c.misses) == (0, 0, 20, 4)
        assert cache.l1 is not None and cache.l1.breaker.state is BreakerState.CLOSED
        assert blocking.get_many(["old", "k1"]) == [None, items[1][1]]
    finally:
        blocking.close()
        routed.close()
        await cache.aclose()


@pytest.mark.asyncio
async def test_read_now_answers_as_get_many_across_every_master(cluster: Any) -> None:
    """``TieredCache.read_now`` on a cluster: one ``GET`` pipeline per master sent at once, the
    replies joined in key order; rows and counters as ``get_many``'s over the same records, an
    old-layout entry a miss. Declined until the slot map is read and every master's connection open."""
    from mly.cache.tiered import TieredCache

    store = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    twin = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    ours = TieredCache(None, store, None, ttl_ms=60_000, timeout_s=0.5)
    common = TieredCache(None, twin, None, ttl_ms=60_000, timeout_s=0.5)
    routed = sync_redis_client(cluster.connection(seeds=6))
    try:
        items = rows(200)
        await store.put_many(items)
        routed.hset(entry_key("ns", "ds", "old"), mapping={"i": "1", "dictHash": str(H)})
        keys = [f"k{i}" for i in range(0, 200, 3)] + ["absent", "old", "k5"]
        assert not ours.read_now(keys, H, lambda rows, hits: pytest.fail("answered"))  # no slot map yet
        for cache in (ours, common):
            await cache.get_many([key for key, _ in items], H)  # opens a connection to every master
        done: asyncio.Future[tuple[Any, int]] = asyncio.get_running_loop().create_future()
        assert ours.read_now(keys, H, lambda rows, hits: done.set_result((rows, hits)))
        found, hits = await done
        assert found == await common.get_many(keys, H)
        assert found[-3:-1] == [None, None] and None not in found[:-3] + found[-1:]
        assert hits == len(keys) - 2
        assert ours.stats() == common.stats()
    finally:
        routed.close()
        await ours.aclose()
        await common.aclose()


async def warmed_twins(cluster: Any, items: list[tuple[str, StoredRow]],
                       timeout_s: float) -> tuple[RedisStore, Any, Any]:
    """``items`` written; a store-only cache over them (its store too) and a twin reading the same
    records the common way, each with a connection open to every master."""
    from mly.cache.tiered import TieredCache

    store = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    twin = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    ours = TieredCache(None, store, None, ttl_ms=60_000, timeout_s=timeout_s)
    common = TieredCache(None, twin, None, ttl_ms=60_000, timeout_s=timeout_s)
    await store.put_many(items)
    for cache in (ours, common):
        await cache.get_many([key for key, _ in items], H)  # opens a connection to every master
    return store, ours, common


@pytest.mark.asyncio
async def test_read_now_lookups_of_one_turn_are_read_together(cluster: Any) -> None:
    """Lookups started in one turn of the event loop go out as one ``GET`` pipeline per master, and
    each gets exactly its own rows (as ``get_many`` answers them), a lookup of one key and one naming
    a key twice included. When the server closes a master's lookup connection under such a turn,
    every lookup of it is still answered, tried once more the common way."""
    store, ours, common = await warmed_twins(cluster, rows(200), timeout_s=1.0)
    try:
        lookups = [[f"k{i}" for i in range(start, 200, 7)] for start in range(5)]
        lookups += [["k1"], ["absent", "k2", "k2", "k199"]]
        expected = [await common.get_many(keys, H) for keys in lookups]
        lookups_of = store._cluster_lookups
        assert lookups_of is not None

        async def turn() -> list[tuple[Any, int]]:
            answers = []
            for keys in lookups:
                answered: asyncio.Future[tuple[Any, int]] = asyncio.get_running_loop().create_future()
                assert ours.read_now(keys, H, lambda rows, hits, f=answered: f.set_result((rows, hits)))
                answers.append(answered)
            assert lookups_of._turn is not None and len(lookups_of._turn.parts) == len(lookups)  # one read
            return await asyncio.gather(*answers)

        for (found, hits), want in zip(await turn(), expected, strict=True):
            assert found == want and hits == sum(row is not None for row in want)
        assert ours.counters.errors == 0

        master = lookups_of._masters[0].endpoint
        killer = redis.Redis(host=master.host, port=master.port)
        try:
            ids = [client["id"] for client in killer.client_list() if client["name"] == "mly-lookups"]
            assert ids
            answers = asyncio.ensure_future(turn())
            await asyncio.sleep(0)  # the lookups joined the turn...
            for client_id in ids:  # ...and the server drops that master's lookup connections under it
                killer.client_kill_filter(_id=client_id)
            for (found, hits), want in zip(await answers, expected, strict=True):
                assert found == want and hits == sum(row is not None for row in want)
        finally:
            killer.close()
        assert ours.counters.errors == 0 and ours.counters.timeouts == 0
    finally:
        await ours.aclose()
        await common.aclose()


@pytest.mark.asyncio
async def test_a_paused_master_holds_up_only_the_lookups_of_its_own_keys(cluster: Any) -> None:
    """Lookups read together in one turn, one master paused (SIGSTOP: no reset, no reply): the lookup
    whose keys are all on other masters is answered, those with a key on the paused one time out;
    rows, counters and breaker as ``get_many`` over the same pause. The pause stays well under the
    cluster's node timeout, so no failover starts."""
    from redis.crc import key_slot

    items = rows(30)
    store, ours, common = await warmed_twins(cluster, items, timeout_s=0.3)
    try:
        lookups_of = store._cluster_lookups
        assert lookups_of is not None and lookups_of._owners is not None
        owner = {key: lookups_of._owners[key_slot(entry_key("ns", "ds", key).encode())] for key, _ in items}
        on_paused = [key for key in owner if owner[key] == 0]
        elsewhere = [key for key in owner if owner[key] != 0]
        assert on_paused and elsewhere
        lookups = [[on_paused[0]], elsewhere[:3], [elsewhere[0], on_paused[-1]]]
        victim = next(node for node in cluster.nodes if node.port == lookups_of._masters[0].endpoint.port)
        victim.pause()
        try:
            answers = []
            for keys in lookups:
                answered: asyncio.Future[tuple[Any, int]] = asyncio.get_running_loop().create_future()
                assert ours.read_now(keys, H, lambda rows, hits, f=answered: f.set_result((rows, hits)))
                answers.append(answered)
            got, want = await asyncio.gather(asyncio.gather(*answers),
                                             asyncio.gather(*(common.get_many(keys, H) for keys in lookups)))
        finally:
            victim.resume()
        assert [[row is None for row in found] for found in want] == [[True], [False] * 3, [True, True]]
        assert [found for found, _ in got] == want and [hits for _, hits in got] == [0, 3, 0]
        assert ours.counters.timeouts == 2
        assert ours.stats() == common.stats()
    finally:
        await ours.aclose()
        await common.aclose()


@pytest.mark.asyncio
async def test_a_master_that_stalls_as_its_turn_is_sent_fails_only_its_lookups(cluster: Any) -> None:
    """A master's connection found stalled (no reply within the socket timeout) by the ``send_now``
    of a turn, just after its ``ready()`` said yes: its lookups are tried once more the common way,
    the others answered; none waits for its deadline. A test double stands for the stall: the
    moment a reply's wait crosses the socket timeout cannot be placed between the two calls for real."""
    from redis.crc import key_slot

    from mly.cache.tiered import TieredCache

    store = RedisStore.from_connection(cluster.connection(), namespace="ns", dataset="ds", ttl_ms=60_000)
    cache = TieredCache(None, store, None, ttl_ms=60_000, timeout_s=0.3)
    try:
        items = rows(30)
        await store.put_many(items)
        await cache.get_many([key for key, _ in items], H)  # opens a connection to every master
        lookups_of = store._cluster_lookups
        assert lookups_of is not None and lookups_of._owners is not None
        owner = {key: lookups_of._owners[key_slot(entry_key("ns", "ds", key).encode())] for key, _ in items}
        on_stalled = [key for key in owner if owner[key] == 0]
        elsewhere = [key for key in owner if owner[key] != 0]
        lookups = [on_stalled[:2], elsewhere[:3]]
        lookups_of._masters[0].send_now = lambda *args, **kwargs: None  # type: ignore[method-assign]
        answers = []
        for keys in lookups:
            answered: asyncio.Future[tuple[Any, int]] = asyncio.get_running_loop().create_future()
            assert cache.read_now(keys, H, lambda rows, hits, f=answered: f.set_result((rows, hits)))
            answers.append(answered)
        got = await asyncio.gather(*answers)
        assert [hits for _, hits in got] == [2, 3] and all(None not in found for found, _ in got)
        assert (cache.counters.errors, cache.counters.timeouts) == (0, 0)
    finally:
        await cache.aclose()
