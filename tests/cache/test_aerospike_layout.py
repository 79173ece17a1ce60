"""Aerospike records as the Go viant/mly server and client write and read them.

The Go side is played by the plain ``aerospike`` client, doing exactly what the
Go code does, independent of mly's store:

- key ``(Namespace, Set=Dataset, user key = the cache key text)``, written with
  the user key sent (the Go server's write policy sets ``SendKey``);
- one bin per output with the Go value: a ``float32`` output is stored as the
  double it widens to, ``int64``/``int32`` as an integer bin, ``string`` as a
  string bin; plus integer bin ``dictHash`` when the hash is not 0;
- expiration ``TimeToLiveMs / 1000`` seconds.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from typing import Any

import numpy as np
import orjson
import pytest
from aerospike_server import NAMESPACE, AerospikeServer

from mly._native.mru import MRUCache
from mly.cache import TieredCache
from mly.cache.aerospike import AerospikeStore, narrow_float
from mly.cache.base import StoredRow, StoreWriteError
from mly.cache.storable import DEFAULT_STORABLE

DICT_HASH = -5_170_392_211_406_349_117  # a full-range int64, as Go's FNV sums are
TTL_MS = 900_000


def widened(value: float) -> float:
    """Go's ``float64(float32(value))``: what the Go client stores for a float32 output."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


@pytest.fixture
def aero(aerospike_l1: AerospikeServer) -> AerospikeServer:
    aerospike_l1.ensure_up()
    return aerospike_l1


@pytest.fixture
def dataset() -> str:
    return f"golayout_{uuid.uuid4().hex[:8]}"


def make_cache(server: AerospikeServer, dataset: str, *, memory: bool = False,
               json_rows: bool = False) -> TieredCache:
    store = AerospikeStore.from_connection(server.connection(1000), namespace=NAMESPACE, dataset=dataset,
                                           ttl_ms=TTL_MS, name="aerospike:go", json_rows=json_rows)
    return TieredCache(MRUCache(1 << 20) if memory else None, store, None, ttl_ms=TTL_MS, timeout_s=1.0)


def go_put(client: Any, dataset: str, key: str, bins: dict[str, Any], dict_hash: int) -> None:
    import aerospike

    record = dict(bins)
    if dict_hash:
        record["dictHash"] = dict_hash
    client.put((NAMESPACE, dataset, key), record, policy={"key": aerospike.POLICY_KEY_SEND, "ttl": TTL_MS // 1000})


def test_narrow_float_undoes_go_widening_only() -> None:
    assert widened(0.3) == 0.30000001192092896
    assert narrow_float(widened(0.3)) == 0.3
    assert narrow_float(widened(-1.17549435e-38)) == -1.1754944e-38
    assert narrow_float(widened(3.4028235e38)) == 3.4028235e38
    for value in (0.3, 0.1 + 0.2, 1e300, -2.5e-320, 123456789.123):  # not float32 values: untouched
        assert narrow_float(value) == value
    assert narrow_float(0.5) == 0.5 and narrow_float(-0.0) == 0.0
    assert narrow_float(float("inf")) == float("inf")


@pytest.mark.asyncio
async def test_record_written_as_go_does_is_served_by_mly(aero: AerospikeServer, dataset: str) -> None:
    with aero.connected() as client:
        go_put(client, dataset, "us/mobile/18/19.99", {"score": widened(0.3), "label_id": 7, "label": "ctr"},
               DICT_HASH)
        go_put(client, dataset, "no/hash", {"score": widened(1.5), "label_id": -3, "label": "x"}, 0)
    cache = make_cache(aero, dataset, memory=True)
    try:
        found = await cache.get_many(["us/mobile/18/19.99", "no/hash", "absent"], DICT_HASH)
        # Same bytes as mly's own answer for that row: outputs sorted, float32 at its shortest.
        own = orjson.dumps({"label": "ctr", "label_id": np.int64(7), "score": np.float32(0.3)},
                           option=orjson.OPT_SERIALIZE_NUMPY)
        assert found == [own, None, None]
        assert cache.counters.stale == 1  # Go's "no dictHash bin" means hash 0: another dictionary
        assert await cache.get_many(["no/hash"], 0) == [b'{"label":"x","label_id":-3,"score":1.5}']
    finally:
        await cache.aclose()


class _Reversed:
    """A storable whose rows are not the fields sorted by name: its rows must not come from
    the store's own row JSON."""

    def to_fields(self, row: Any) -> dict[str, Any]:
        return dict(DEFAULT_STORABLE.to_fields(row))

    def from_fields(self, fields: dict[str, Any]) -> Any:
        return dict(sorted(fields.items(), reverse=True))


@pytest.mark.asyncio
async def test_row_json_built_while_decoding_is_the_memory_tiers_bytes(aero: AerospikeServer, dataset: str) -> None:
    """Hits decoded straight to row JSON on the read thread (``json_rows``) answer the same
    bytes as the fields decoded by the storable, and as the memory tier holds for the row."""
    rows: dict[str, dict[str, Any]] = {
        "ints": {"b_small": np.int64(7), "a_big": np.int64(-(2**63)), "c_py": 3},
        "floats": {"f32": np.float32(0.3), "f64": 0.1 + 0.2, "tiny": np.float32(1e-45), "whole": np.float32(2.0),
                   "huge": 1e300, "neg": np.float32(-3.4028235e38)},
        "strings": {"s": "tablet", "u": "zürich ✓", "empty": ""},
        "lists": {"wide": np.float32([0.25, 0.3, 1e-7]), "ids": np.int64([3, 1, 2]), "tags": ["b", "a"]},
        "nested": {"m": {"z": 1, "a": [{"y": 0.5, "b": "x"}]}, "k": 1},
        "hash_only": {},
    }
    writer = make_cache(aero, dataset)
    try:
        writer.put_many([(key, row, b"") for key, row in rows.items()], DICT_HASH)
        assert await writer.flush() and writer.counters.write_errors == 0
    finally:
        await writer.aclose()
    with aero.connected() as client:  # as Go writes it: float32 widened; a map bin (read back key-sorted)
        go_put(client, dataset, "go", {"score": widened(0.3), "wide": [widened(0.1), 5], "map": {"z": 1, "a": 2},
                                       "label": "ctr"}, DICT_HASH)
    keys = [*rows, "go", "absent"]
    fast = make_cache(aero, dataset, json_rows=True)
    plain = make_cache(aero, dataset)
    try:
        decoded = await fast.get_many(keys, DICT_HASH)
        assert decoded == await plain.get_many(keys, DICT_HASH)
        for key, row in rows.items():  # the bytes a fresh answer of that row carries (memory tier)
            if key != "nested":  # a map bin comes back with its keys sorted, whichever way it is decoded
                assert decoded[keys.index(key)] == orjson.dumps(dict(sorted(row.items())),
                                                                option=orjson.OPT_SERIALIZE_NUMPY), key
        assert decoded[-2] == b'{"label":"ctr","map":{"a":2,"z":1},"score":0.3,"wide":[0.1,5]}'
        assert decoded[-1] is None and fast.counters.hits_l1 == len(rows) + 1
    finally:
        for cache in (fast, plain):
            await cache.aclose()


@pytest.mark.asyncio
async def test_a_datastore_with_its_own_storable_gets_its_rows_from_it(aero: AerospikeServer, dataset: str) -> None:
    """The store builds row JSON only for the default storable; another one decodes the fields."""
    from mly.cache import build_datastore
    from mly.cache.storable import register_storable
    from mly.config.schema import Config, Connection, Datastore

    register_storable("reversed-for-test", _Reversed())
    config = Config(connections=(Connection(id="aero", hostnames=aero.host, port=aero.port),),
                    datastores=(Datastore(id="own", connection="aero", namespace=NAMESPACE, dataset=dataset,
                                          storable="reversed-for-test"),
                                Datastore(id="default", connection="aero", namespace=NAMESPACE, dataset=dataset)))
    own, default = (build_datastore(ds, config) for ds in config.datastores)
    try:
        assert own.l1 is not None and not own.l1.store.sync.json_rows  # type: ignore[attr-defined]
        own.put_many([("k", {"a": 1, "b": "x"}, b"")], DICT_HASH)
        assert await own.flush()
        assert await own.get_many(["k"], DICT_HASH) == [b'{"b":"x","a":1}']
        assert await default.get_many(["k"], DICT_HASH) == [b'{"a":1,"b":"x"}']
    finally:
        await own.aclose()
        await default.aclose()


@pytest.mark.asyncio
async def test_record_written_by_mly_is_read_as_go_reads_it(aero: AerospikeServer, dataset: str) -> None:
    import aerospike

    cache = make_cache(aero, dataset)
    row = {"label": "ctr", "label_id": np.int64(7), "score": np.float32(0.3), "wide": np.float32([0.25, 2])}
    no_hash = {"score": np.float32(1.5)}
    try:
        cache.put_many([("us/mobile/18/19.99", row, b""), ("no/hash", no_hash, b"")], DICT_HASH)
        assert await cache.flush()
        cache.put_many([("no/hash", no_hash, b"")], 0)
        assert await cache.flush()
        assert cache.counters.writes == 3
    finally:
        await cache.aclose()

    with aero.connected() as client:
        (_, _, _, digest), meta, bins = client.get((NAMESPACE, dataset, "us/mobile/18/19.99"))
        assert set(bins) == {"label", "label_id", "score", "wide", "dictHash"}
        assert type(bins["score"]) is float and np.float32(bins["score"]) == np.float32(0.3)  # a double bin
        assert type(bins["label_id"]) is int and bins["label_id"] == 7  # an integer bin
        assert bins["label"] == "ctr"
        assert bins["dictHash"] == DICT_HASH and type(bins["dictHash"]) is int
        assert bins["wide"] == [0.25, 2.0]  # mly keeps wide outputs whole (Go would keep the first value)
        assert TTL_MS // 1000 - 60 <= meta["ttl"] <= TTL_MS // 1000
        _, _, zero = client.get((NAMESPACE, dataset, "no/hash"))
        assert zero == {"score": 1.5}  # hash 0: no dictHash bin, as Go writes it; older bins replaced

        # The user key is stored with the record (Go's SendKey), so a scan of the set sees the cache keys.
        keys = sorted(key[2] for key, _, _ in client.query(NAMESPACE, dataset).results())
        assert keys == ["no/hash", "us/mobile/18/19.99"]
        assert aerospike.calc_digest(NAMESPACE, dataset, "us/mobile/18/19.99") == bytes(digest)


@pytest.mark.asyncio
async def test_record_the_server_refuses_does_not_stop_the_others(aero: AerospikeServer, dataset: str) -> None:
    """Aerospike bin names have at most 15 bytes (as for Go): that row fails, its batch-mates are written."""
    store = AerospikeStore.from_connection(aero.connection(1000), namespace=NAMESPACE, dataset=dataset,
                                           ttl_ms=TTL_MS, name="aerospike:go")
    cache = TieredCache(None, store, None, ttl_ms=TTL_MS, timeout_s=1.0)
    try:
        cache.put_many([("a", {"v": 1}, b""), ("long", {"a_much_too_long_bin_name": 2}, b""), ("b", {"v": 3}, b"")],
                       DICT_HASH)
        assert await cache.flush()
        assert (cache.counters.write_errors, cache.counters.writes) == (1, 2)
        assert cache.l1 is not None and cache.l1.breaker.state.value == "closed"  # the store did answer
        assert await store.get_many(["a", "long", "b"]) == [
            StoredRow({"v": 1}, DICT_HASH), None, StoredRow({"v": 3}, DICT_HASH)]
        with pytest.raises(StoreWriteError, match=r"aerospike:go: 1 of 1 records refused; first 'long': BinNameError"):
            await store.put_many([("long", StoredRow({"a_much_too_long_bin_name": 2}, 0))])
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_ttl_expiry_removes_the_record_on_the_server(aero: AerospikeServer, dataset: str) -> None:
    import aerospike

    store = AerospikeStore.from_connection(aero.connection(1000), namespace=NAMESPACE, dataset=dataset,
                                           ttl_ms=1000, name="aerospike:ttl")
    try:
        await store.put_many([("k", StoredRow({"v": 1}, DICT_HASH))])
        with aero.connected() as client:
            _, meta, _ = client.get((NAMESPACE, dataset, "k"))
            assert 0 < meta["ttl"] <= 1
            await asyncio.sleep(2.2)
            with pytest.raises(aerospike.exception.RecordNotFound):
                client.get((NAMESPACE, dataset, "k"))  # gone for any reader, not only for mly
        assert await store.get_many(["k"]) == [None]
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_build_datastore_with_aerospike_tiers(aero: AerospikeServer, dataset: str) -> None:
    """Config -> tiers: Go's Connections (default kind aerospike, Timeout) and L2 written with the L1 TTL."""
    from mly.cache import CacheCounters, build_datastore
    from mly.config.schema import Config, Connection, Datastore, L2Reference, Timeout

    connection = Connection(id="aero", hostnames=f" {aero.host} ,", port=aero.port,
                            timeout=Timeout(connection=500, socket=300, total=350))
    config = Config(
        connections=(connection,),
        datastores=(Datastore(id="ds", connection="aero", namespace=NAMESPACE, dataset=dataset,
                              time_to_live_ms=5000,
                              l2=L2Reference(connection="aero", namespace=NAMESPACE, dataset=f"{dataset}_l2")),),
    )
    counters = CacheCounters()
    cache = build_datastore(config.datastores[0], config, counters=counters)
    try:
        assert cache.l1 is not None and cache.l2 is not None and cache.memory is None
        assert (cache.l1.store.name, cache.l2.store.name) == (f"aerospike:aero:{dataset}", f"aerospike:aero:{dataset}_l2")
        assert cache.timeout_s == 0.35
        assert cache.l1.store.sync.json_rows and cache.l2.store.sync.json_rows  # type: ignore[attr-defined]
        cache.put_many([("k", {"v": 1}, b'{"v":1}')], DICT_HASH)
        assert await cache.flush()
        assert counters.writes == 2
        with aero.connected() as client:
            for set_name in (dataset, f"{dataset}_l2"):
                _, meta, bins = client.get((NAMESPACE, set_name, "k"))
                assert bins == {"v": 1, "dictHash": DICT_HASH}
                assert 4 <= meta["ttl"] <= 5  # L2 written with the L1 TTL, as Go's server does
        assert await cache.get_many(["k"], DICT_HASH) == [b'{"v":1}']
    finally:
        await cache.aclose()
