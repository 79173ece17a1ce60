"""mly's own Aerospike batch reads (``aerospike_reads``) against the official client's, on a real server.

The differential tests write records through the official client (as mly and Go write
them, and unusual ones) and read them both ways through a ``TieredCache`` with no memory
tier: the answers, the stale counts and the time left must be the same. The malformed
reply tests use a test double server (a real Aerospike never sends one); everything else
is a real single-node server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import struct
import time
import uuid
from array import array
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aerospike
import orjson
import pytest
import pytest_asyncio
from aerospike_server import NAMESPACE, AerospikeServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mly._native import aerospike_wire
from mly.cache import TieredCache
from mly.cache.aerospike import AerospikeStore, narrow_float
from mly.cache.aerospike_nodes import request_info
from mly.cache.aerospike_reads import AerospikeLookups
from mly.cache.base import StoredRow, StoreUnavailableError
from mly.cache.breaker import CircuitBreaker, ExponentialBackoff
from mly.config.schema import Connection

H = 1234567890123


@pytest.fixture
def aero(aerospike_l1: AerospikeServer) -> AerospikeServer:
    aerospike_l1.ensure_up()
    return aerospike_l1


def store(server: AerospikeServer, dataset: str, *, native: bool, timeout_ms: int = 300) -> AerospikeStore:
    return AerospikeStore.from_connection(server.connection(timeout_ms), namespace=NAMESPACE, dataset=dataset,
                                          ttl_ms=60_000, name=f"aerospike:{dataset}", json_rows=True,
                                          native_reads=native)


class Pair:
    """The same set read natively and through the official client, each behind a store-only cache."""

    def __init__(self, server: AerospikeServer, dataset: str) -> None:
        self.dataset = dataset
        self.native = store(server, dataset, native=True)
        self.official = store(server, dataset, native=False)
        assert self.native.lookups is not None and self.official.lookups is None
        self.native_cache = TieredCache(None, self.native, None, ttl_ms=60_000, timeout_s=2.0)
        self.official_cache = TieredCache(None, self.official, None, ttl_ms=60_000, timeout_s=2.0)
        self.client: Any = self.official.sync._connected()

    def put_raw(self, key: str, bins: dict[str, Any], ttl_s: int = 600, *, send_key: bool = True) -> None:
        """A record written as another program (Go's server, an earlier mly) may have written it."""
        policy = {"key": aerospike.POLICY_KEY_SEND if send_key else aerospike.POLICY_KEY_DIGEST, "ttl": ttl_s}
        self.client.put((NAMESPACE, self.dataset, key), bins, policy=policy)

    async def compare(self, keys: list[str], dict_hash: int = H) -> list[bytes | None]:
        native_rows = await self.native_cache.get_many(keys, dict_hash)
        official_rows = await self.official_cache.get_many(keys, dict_hash)
        assert native_rows == official_rows
        assert self.native_cache.counters.stale == self.official_cache.counters.stale
        assert self.native_cache.counters.errors == self.official_cache.counters.errors == 0
        read = await self.native.get_rows(keys, dict_hash)
        official = await self.official.get_many(keys)
        for hit, left, stored in zip(read.rows, read.remaining_ms, official, strict=True):
            if hit is not None:
                assert stored is not None
                if stored.ttl_ms is None:  # never expires
                    assert left == aerospike_wire.NEVER_EXPIRES_MS
                else:
                    assert abs(left - stored.ttl_ms) <= 1000
        return native_rows

    async def aclose(self) -> None:
        for cache in (self.native_cache, self.official_cache):
            await cache.aclose()


@pytest_asyncio.fixture
async def pair(aero: AerospikeServer) -> AsyncIterator[Pair]:
    both = Pair(aero, f"nat_{uuid.uuid4().hex[:8]}")
    try:
        yield both
    finally:
        await both.aclose()


# ------------------------------------------------------------------ pure functions


@given(st.text(max_size=80), st.text(max_size=40).filter(lambda s: len(s.encode()) < 64))  # a set name's limit
@settings(max_examples=300, deadline=None)
def test_digests_are_the_official_clients(key: str, dataset: str) -> None:
    """NUL bytes included: the official client ends set and key at the first one."""
    assert aerospike_wire.digest(dataset.encode(), key) == aerospike.calc_digest(NAMESPACE, dataset, key)


def test_digests_of_keys_across_block_boundaries() -> None:
    for size in range(0, 200):
        key = "k" * size
        assert aerospike_wire.digest(b"set", key) == aerospike.calc_digest(NAMESPACE, "set", key), size


@given(st.lists(st.text(max_size=70), max_size=40), st.integers(0, 50))
@settings(max_examples=200, deadline=None)
def test_remembered_digests_route_as_computed_ones(keys: list[str], remember: int) -> None:
    owners = array("H", range(4096))
    memo: dict[str, bytes] = {}
    fresh = aerospike_wire.route(b"ns", b"set", keys, owners, 100)
    assert aerospike_wire.route(b"ns", b"set", keys, owners, 100, None, memo, remember) == fresh
    assert aerospike_wire.route(b"ns", b"set", keys, owners, 100, None, memo, remember) == fresh
    assert len(memo) <= remember
    assert all(digest == aerospike_wire.digest(b"set", key) for key, digest in memo.items())


@given(st.one_of(st.floats(), st.floats(width=32), st.integers(0, 2**64 - 1).map(
    lambda bits: struct.unpack("<d", bits.to_bytes(8, "little"))[0])))
@settings(max_examples=3000, deadline=None)
def test_doubles_are_written_as_orjson_writes_the_narrowed_value(value: float) -> None:
    assert aerospike_wire.json_double(value) == orjson.dumps(narrow_float(value))


def test_doubles_at_the_notation_boundaries() -> None:
    for exponent in range(-330, 310):
        for mantissa in ("1", "2.5", "9.999999", "1.2345678901234567"):
            value = float(f"{mantissa}e{exponent}")
            widened = struct.unpack("<f", struct.pack("<f", value))[0] if abs(value) < 3e38 else value
            for v in (value, -value, widened):
                assert aerospike_wire.json_double(v) == orjson.dumps(narrow_float(v)), v


def test_remembered_texts_answer_only_for_their_own_value() -> None:
    """The texts of recent doubles are kept by a hash of their bits, far fewer slots than values
    here, so slots are overwritten and shared: every value, the first time and again, gets its own."""
    rng = random.Random(7)
    values = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(10_000)]
    values += [struct.unpack("<f", rng.getrandbits(32).to_bytes(4, "little"))[0] for _ in range(10_000)]
    values += [v + 1e-12 for v in (0.1, 0.5, 0.25)] + [0.0, -0.0, 1e-05, 2.5e-05, 1e16, float("inf")]
    values += [float("nan"), -float("inf")]
    for _ in range(2):
        for value in values:
            assert aerospike_wire.json_double(value) == orjson.dumps(narrow_float(value)), value
        rng.shuffle(values)


# ------------------------------------------------------------------ differential, real server

NAMES = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=6).filter(
    lambda s: len(s.encode()) <= 14 and s != "dictHash")
SCALARS = st.one_of(
    st.integers(-2**63, 2**63 - 1),
    st.sampled_from([-2**63, 2**63 - 1, 0, -1, 127, 128, -32, -33, 255, 65535, 2**32]),
    st.floats(allow_nan=False),
    st.floats(width=32, allow_nan=False),
    st.text(max_size=20),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=6),
    st.dictionaries(st.text(max_size=3), st.integers(-2**63, 2**63 - 1), max_size=2),  # maps: read by the official client
    st.booleans(),
)
RECORDS = st.lists(st.tuples(st.dictionaries(NAMES, VALUES, max_size=5), st.sampled_from([H, 0, 7])),
                   min_size=1, max_size=8)


@pytest.mark.asyncio
async def test_generated_records_read_natively_as_the_official_client_reads_them(pair: Pair) -> None:
    seen = 0

    @given(RECORDS)
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def check(records: list[tuple[dict[str, Any], int]]) -> None:
        nonlocal seen
        seen += 1
        keys = [f"g{seen}_{i}" for i in range(len(records))]
        for key, (bins, dict_hash) in zip(keys, records, strict=True):
            if dict_hash:
                bins = {**bins, "dictHash": dict_hash}
            if bins:
                pair.put_raw(key, bins)
        keys.append(f"g{seen}_missing")
        asyncio.run_coroutine_threadsafe(pair.compare(keys), loop).result()

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as pool:
        await loop.run_in_executor(pool, check)
    assert seen >= 60


@pytest.mark.asyncio
async def test_mly_go_and_unusual_records(pair: Pair) -> None:
    await pair.official.put_many([
        ("mly", StoredRow({"p": 0.25, "label": "click", "n": 3, "wide": [0.5, 1.5, "x"]}, H)),
        ("unicode", StoredRow({"é": "naïve \u2028 \U0001F600 \x00\x1f\"\\", "k": ""}, H)),
    ])
    pair.put_raw("go", {"p": float(struct.unpack("<f", struct.pack("<f", 0.3))[0]), "dictHash": H}, send_key=False)
    pair.put_raw("go_no_hash", {"p": 0.30000001192092896})  # Go leaves dictHash out when it is 0
    pair.put_raw("edges", {"lo": -2**63, "hi": 2**63 - 1, "l": [-2**63, 2**63 - 1, -1, 0, 1.0e300], "dictHash": H})
    pair.put_raw("only_hash", {"dictHash": H})
    pair.put_raw("zero_hash_only", {"dictHash": 0})
    pair.put_raw("nested", {"m": {"b": 1, "a": [1, {"x": 2.5}]}, "l": [[1], {"k": "v"}], "dictHash": H})
    pair.put_raw("blob_in_list", {"l": [bytearray(b"\x00\x01")], "v": 1, "dictHash": H})
    pair.put_raw("other_hash", {"v": 1, "dictHash": H + 1})
    pair.put_raw("float_hash", {"v": 1, "dictHash": 2.5})
    keys = ["mly", "unicode", "go", "go_no_hash", "edges", "only_hash", "zero_hash_only", "nested",
            "other_hash", "float_hash", "missing"]
    rows = await pair.compare(keys)
    assert rows[0] == b'{"label":"click","n":3,"p":0.25,"wide":[0.5,1.5,"x"]}'
    assert rows[2] == b'{"p":0.3}'
    assert rows[5] == b"{}" and rows[6] is None and rows[-1] is None
    assert await pair.compare(["go_no_hash"], dict_hash=0) == [b'{"p":0.3}']


@pytest.mark.asyncio
async def test_keys_holding_a_nul_byte_are_never_read_or_written(pair: Pair) -> None:
    """The official client cuts a key at its first NUL byte (a C string): keys that differ only
    after one would share the record of their common start, and one row would answer for another."""
    shared = "nul/a\x00"
    await pair.official.put_many([(shared + "x", StoredRow({"v": 1}, H)), ("plain", StoredRow({"v": 3}, H))])
    await pair.native.put_many([(shared + "z", StoredRow({"v": 2}, H))])
    assert pair.official.sync.get_many(["nul/a"]) == [None]  # nothing was written under the cut key
    pair.put_raw("nul/a", {"v": 9, "dictHash": H})  # what another writer may hold under the cut key
    keys = [shared + "x", shared + "y", "plain", "nul/a"]
    assert await pair.compare(keys) == [None, None, b'{"v":3}', b'{"v":9}']
    read = await pair.native.get_rows(keys, H)
    assert read.rows == [None, None, b'{"v":3}', b'{"v":9}'] and read.remaining_ms[:2] == [0, 0]


@pytest.mark.asyncio
async def test_expired_records_are_misses(pair: Pair) -> None:
    pair.put_raw("short", {"v": 1, "dictHash": H}, ttl_s=1)
    pair.put_raw("long", {"v": 2, "dictHash": H}, ttl_s=600)
    assert await pair.compare(["short", "long"]) == [b'{"v":1}', b'{"v":2}']
    await asyncio.sleep(2.2)
    assert await pair.compare(["short", "long"]) == [None, b'{"v":2}']


@pytest.mark.asyncio
async def test_entries_older_than_a_reload_are_stale_both_ways(pair: Pair) -> None:
    pair.put_raw("old", {"v": 1, "dictHash": H}, ttl_s=60)  # the cache's TTL: written 1.1 s before the reload
    pair.put_raw("forever", {"v": 1, "dictHash": H}, ttl_s=-1)
    await asyncio.sleep(1.1)
    for cache in (pair.native_cache, pair.official_cache):
        cache.forget_older_entries()
    assert await pair.compare(["old", "forever"]) == [None, None]
    assert pair.native_cache.counters.stale == 2


@pytest.mark.asyncio
async def test_a_large_lookup_spans_several_reply_chunks(pair: Pair) -> None:
    big = "x" * 3000
    await pair.official.put_many([(f"big{i}", StoredRow({"s": big, "i": i}, H)) for i in range(400)])
    rows = await pair.compare([f"big{i}" for i in range(400)])
    assert all(row is not None for row in rows)


def batches_started(server: AerospikeServer) -> int:
    statistics = request_info(server.host, server.port, ["statistics"], 2.0)["statistics"]
    return int(dict(item.split("=", 1) for item in statistics.split(";") if "=" in item)["batch_index_initiate"])


@pytest.mark.asyncio
async def test_lookups_of_one_loop_turn_are_one_batch_read_each_answered_as_alone(
    pair: Pair, aero: AerospikeServer
) -> None:
    await pair.official.put_many([(f"m{i}", StoredRow({"i": i}, H if i % 3 else H + 1)) for i in range(40)])
    lookups = [([f"m{i}" for i in range(start, start + 12)] + ["absent"], dict_hash)
               for start, dict_hash in ((0, H), (5, H), (20, H + 1), (28, H), (30, H + 1))]
    alone = [await pair.native.get_rows(keys, dict_hash) for keys, dict_hash in lookups]
    before = batches_started(aero)
    together = await asyncio.gather(*(pair.native.get_rows(keys, dict_hash) for keys, dict_hash in lookups))
    assert batches_started(aero) - before == 2  # one per (hash, age bound) in that turn, not one per lookup
    for one, other, (keys, dict_hash) in zip(alone, together, lookups, strict=True):
        assert other.rows == one.rows and other.stale == one.stale
        written = [int(key[1:]) for key in keys[:-1] if int(key[1:]) < 40]
        assert other.stale == sum(1 for i in written if (i % 3 == 0) != (dict_hash == H + 1))
        assert all(abs(a - b) <= 1000 for a, b in zip(one.remaining_ms, other.remaining_ms, strict=True))


def test_lookups_under_uvloop(aero: AerospikeServer) -> None:
    """The server's event loop (uvloop) hands a protocol its bytes differently from asyncio's."""
    import uvloop

    async def check() -> None:
        both = Pair(aero, f"nat_{uuid.uuid4().hex[:8]}")
        try:
            await both.official.put_many([(f"u{i}", StoredRow({"i": i, "s": "x" * 2000}, H)) for i in range(200)])
            rows = await both.compare([f"u{i}" for i in range(200)])
            assert all(row is not None for row in rows)
        finally:
            await both.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(check())


# ------------------------------------------------------------------ where the native path is used


def test_the_native_path_serves_only_the_default_storable_without_login(aero: AerospikeServer) -> None:
    connection = aero.connection()
    common = {"namespace": NAMESPACE, "dataset": "x", "ttl_ms": 1000}
    assert AerospikeStore.from_connection(connection, json_rows=True, **common).lookups is not None
    assert AerospikeStore.from_connection(connection, json_rows=False, **common).lookups is None
    secured = Connection(id="s", hostnames="127.0.0.1", port=aero.port, kind="aerospike",
                         username="u", password="p", timeout=connection.timeout)
    assert AerospikeStore.from_connection(secured, json_rows=True, **common).lookups is None


def test_the_switch_turns_the_native_path_off(aero: AerospikeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLY_AEROSPIKE_NATIVE_READS", "0")
    store = AerospikeStore.from_connection(aero.connection(), namespace=NAMESPACE, dataset="x", ttl_ms=1000,
                                           json_rows=True)
    assert store.lookups is None and not hasattr(store, "get_rows")


# ------------------------------------------------------------------ connection faults, real server


@pytest.mark.asyncio
async def test_lookups_survive_the_server_closing_their_connection(aero: AerospikeServer) -> None:
    dataset = f"nat_{uuid.uuid4().hex[:8]}"
    l1 = store(aero, dataset, native=True)
    cache = TieredCache(None, l1, None, ttl_ms=60_000, timeout_s=1.0)
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        assert await cache.get_many(["k"], H) == [b'{"v":1}']
        aero.restart()  # every connection to it is reset; the server comes back empty
        deadline = time.monotonic() + 10
        while True:  # the official client (the node list) finds the node again within its tend
            try:
                l1.sync._connected().put((NAMESPACE, dataset, "k"), {"v": 2})
                break
            except aerospike.exception.AerospikeError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        assert await cache.get_many(["k"], H) == [None]  # written without a hash: another dictionary's
        assert await cache.get_many(["k"], 0) == [b'{"v":2}']
        assert cache.counters.errors == 0 and cache.counters.timeouts == 0
    finally:
        await cache.aclose()


@pytest.mark.asyncio
async def test_a_frozen_server_times_lookups_out_and_they_hit_again_once_it_answers(aero: AerospikeServer) -> None:
    dataset = f"nat_{uuid.uuid4().hex[:8]}"
    l1 = store(aero, dataset, native=True, timeout_ms=300)
    breaker = CircuitBreaker(ExponentialBackoff(base_s=0.2, cap_s=0.5, jitter=0.0), name="frozen")
    cache = TieredCache(None, l1, None, ttl_ms=60_000, timeout_s=0.3, breaker_factory=lambda name: breaker)
    try:
        await l1.put_many([("k", StoredRow({"v": 1}, H))])
        assert await cache.get_many(["k"], H) == [b'{"v":1}']
        aero.pause()
        started = time.monotonic()
        assert await asyncio.gather(*(cache.get_many(["k"], H) for _ in range(5))) == [[None]] * 5
        assert time.monotonic() - started < 1.0  # bounded by Timeout.Total, not by TCP
        assert cache.counters.timeouts >= 1
        aero.resume()
        deadline = time.monotonic() + 5
        while await cache.get_many(["k"], H) != [b'{"v":1}']:  # once the breaker lets a probe through
            assert time.monotonic() < deadline, "lookups did not hit again after the server answered"
            await asyncio.sleep(0.05)
    finally:
        aero.ensure_up()
        await cache.aclose()


# ------------------------------------------------------------------ malformed replies (a test double)


def _message(*, info3: int = 0, result: int = 0, index: int = 0, void_time: int = 0, bins: bytes = b"",
             n_ops: int = 0) -> bytes:
    return (bytes([22, 0, 0, info3, 0, result]) + struct.pack(">IIIHH", 1, void_time, index, 0, n_ops) + bins)


def _int_bin(name: bytes, value: int) -> bytes:
    body = bytes([1, 1, 0, len(name)]) + name + struct.pack(">q", value)
    return struct.pack(">I", len(body)) + body


def _proto(payload: bytes, kind: int = 3) -> bytes:
    return struct.pack(">Q", (2 << 56) | (kind << 48) | len(payload)) + payload


def good_reply(count: int) -> bytes:
    messages = b"".join(_message(index=i, n_ops=2, bins=_int_bin(b"v", i) + _int_bin(b"dictHash", H))
                        for i in range(count))
    return _proto(messages) + _proto(_message(info3=1))


class DoubleServer:
    """A test double of one Aerospike node: answers the info requests of the partition map (it owns
    every partition) and each batch read as the next scripted behaviour says. Only for replies a
    real server never sends (truncated, garbage), and a close it does not choose to make."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.batches = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> DoubleServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(8)
                (value,) = struct.unpack(">Q", header)
                body = await reader.readexactly(value & 0xFFFFFFFFFFFF)
                if (value >> 48) & 0xFF == 1:
                    owned = base64.b64encode(b"\xff" * 512).decode()
                    text = f"partition-generation\t1\nreplicas\t{NAMESPACE}:0,1,{owned}\n"
                    writer.write(_proto(text.encode(), kind=1))
                    await writer.drain()
                    continue
                self.batches += 1
                count = struct.unpack(">I", body[22 + 5:22 + 9])[0]
                behaviour = self.script.pop(0) if self.script else "ok"
                reply = good_reply(count)
                if behaviour == "garbage":
                    writer.write(b"\x07" * 64)
                elif behaviour == "truncated":
                    writer.write(reply[:len(reply) // 2])
                    await writer.drain()
                    writer.close()
                    return
                elif behaviour == "bad-index":
                    writer.write(_proto(_message(index=count + 5, n_ops=1, bins=_int_bin(b"v", 1)))
                                 + _proto(_message(info3=1)))
                elif behaviour == "close":
                    writer.close()
                    return
                elif behaviour == "dribble":  # a reply arriving in many small reads
                    for at in range(0, len(reply), 7):
                        writer.write(reply[at:at + 7])
                        await writer.drain()
                        await asyncio.sleep(0.001)
                    continue
                elif behaviour == "server-timeout":
                    writer.write(_proto(_message(info3=1, result=9)))
                else:
                    writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def aclose(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest_asyncio.fixture
async def double() -> AsyncIterator[DoubleServer]:
    server = await DoubleServer().start()
    try:
        yield server
    finally:
        await server.aclose()


@contextlib.asynccontextmanager
async def lookups_on(double: DoubleServer) -> AsyncIterator[AerospikeLookups]:
    """Lookups against the test double, with their fallback thread pool, closed at the end."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(2) as pool:

        async def run(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        lookups = AerospikeLookups(namespace=NAMESPACE, dataset="d", name="double",
                                   list_nodes=lambda: [("127.0.0.1", double.port)], run=run,
                                   fallback_read=lambda keys: [None] * len(keys), timeout_ms=300,
                                   connect_timeout_s=1.0)
        try:
            yield lookups
        finally:
            await lookups.aclose()


EXPECTED = [b'{"v":0}', b'{"v":1}', b'{"v":2}']


@pytest.mark.asyncio
@pytest.mark.parametrize("behaviour", ["garbage", "truncated", "bad-index"])
async def test_a_malformed_reply_fails_the_lookup_and_the_next_one_gets_a_fresh_connection(
    double: DoubleServer, behaviour: str
) -> None:
    async with lookups_on(double) as lookups:
        assert (await lookups.get_rows(["a", "b", "c"], H)).rows == EXPECTED
        # A broken connection: the lookup and its one retry on a fresh connection; a reply framed
        # right but naming a key never asked for fails the lookup alone.
        double.script = [behaviour] * (1 if behaviour == "bad-index" else 2)
        with pytest.raises(StoreUnavailableError):
            await asyncio.wait_for(lookups.get_rows(["a", "b", "c"], H), 2.0)
        assert (await lookups.get_rows(["a", "b", "c"], H)).rows == EXPECTED


@pytest.mark.asyncio
async def test_a_connection_the_server_closed_is_replaced_without_failing_the_lookup(double: DoubleServer) -> None:
    async with lookups_on(double) as lookups:
        assert (await lookups.get_rows(["a", "b", "c"], H)).rows == EXPECTED
        double.script = ["close"]
        assert (await lookups.get_rows(["a", "b", "c"], H)).rows == EXPECTED
        assert double.batches == 3


@pytest.mark.asyncio
async def test_a_reply_arriving_in_pieces_is_read_whole(double: DoubleServer) -> None:
    async with lookups_on(double) as lookups:
        double.script = ["dribble", "ok", "dribble"]
        for _ in range(3):
            assert (await lookups.get_rows(["a", "b", "c"], H)).rows == EXPECTED


@pytest.mark.asyncio
async def test_a_batch_the_server_timed_out_is_a_timeout(double: DoubleServer) -> None:
    async with lookups_on(double) as lookups:
        double.script = ["server-timeout"]
        with pytest.raises(TimeoutError):
            await lookups.get_rows(["a", "b", "c"], H)


def test_reply_framing_waits_for_the_last_message() -> None:
    reply = good_reply(3)
    for cut in range(len(reply)):
        assert aerospike_wire.reply_end(reply[:cut]) == -1
    assert aerospike_wire.reply_end(reply) == len(reply)
    assert aerospike_wire.reply_end(reply + reply[:10]) == len(reply)
    with pytest.raises(ValueError):
        aerospike_wire.reply_end(b"\x02\x04" + reply[2:])  # a compressed proto: never asked for


def test_decoding_rejects_a_truncated_reply() -> None:
    reply = good_reply(3)
    rng = random.Random(7)
    for _ in range(200):
        cut = rng.randrange(1, len(reply) - 1)
        rows: list[bytes | None] = [None] * 3
        try:
            aerospike_wire.decode_reply(reply[:cut], rows, [0] * 3, [], H, 0, 0)
        except ValueError:
            continue
        pytest.fail(f"a reply cut at {cut} decoded")
