"""Aerospike as an L1/L2 tier, laid out exactly as Go viant/mly writes it.

Layout (shared with Go readers and writers of the same sets):

- key ``(namespace, set=dataset, user key=cache key)``, written with
  ``POLICY_KEY_SEND`` so the user key is stored, as Go's server writes do;
- one bin per row field with its native value: ints as integer bins, floats as
  double bins, strings as string bins (lists and maps for mly's wide outputs and
  custom storables), plus integer bin ``dictHash`` only when the hash is non-zero,
  as Go writes it; a missing ``dictHash`` reads as 0;
- TTL in whole seconds, ``ceil(ttl_ms / 1000)``, 0 -> 3600 as Go's WritePolicy;
- a write replaces the whole record (Go updates it, which would keep bins a
  previous model version wrote and this one no longer has).

Go writes a ``float32`` output as the double it widens to (0.3f is stored as
0.30000001192092896). A double bin that is exactly a float32 value is read back
as that float32's shortest text (0.3), so an entry written by Go answers with
the same JSON as one computed here. A float64 output whose value happens to be
exactly a float32 with a long decimal form would be shortened too; outside
float32-derived data such values practically do not occur.

Limits of Aerospike that the layout inherits from Go: a bin name has at most 15
bytes, and a ``None`` value cannot be stored, so a ``null`` field is written
absent and comes back absent. (Sent as a ``None`` bin it would be a bin delete,
which the server refuses in a replacing write: the whole record would be lost.)

Connections (Go's ``Connections[]``): every ``Hostnames`` entry is a seed, TLS is
off, ``Username``/``Password`` (mly's addition) log the client in (security is an
Enterprise feature: Community Edition refuses any login), ``Timeout.Connection`` is
the connect timeout, ``Socket``/``Total`` the socket and total timeouts of reads,
batch reads and writes. A failed command is
retried once at once (the client takes a fresh connection); after a server
restart the client finds the node again by itself within its tend interval.

Lookups of the default storable (the server's own datastores) without a login go over
mly's own connections (``aerospike_reads``): keys hashed and grouped per node natively, one
batch read per node for all the lookups of one event-loop turn, replies decoded natively
straight into the row JSON the memory tier would hold, byte for byte what the official
client's bins give below (a record it cannot decode natively is read through the official
client). ``MLY_AEROSPIKE_NATIVE_READS=0`` sends them through the official client instead, as
do a ``Username`` (mly's reads do not speak the login protocol) and a custom storable. Per
32-row lookup that path costs about 45 µs of CPU in process, where the official client's
batch read alone costs 70-85 µs (a Python result object per record) and decoding its bins
35-40 µs more.

Writes, ``get_many`` and the sync store use the official client, which is blocking.
``SyncAerospikeStore`` is the plain store (for the sync client); ``AerospikeStore`` runs the
same calls in a small dedicated thread pool so the event loop never blocks on the network.
Its ``get_many`` goes through a ``CoalescingReader``: lookups that arrive while a read is in
flight are read together in the next batch, so a burst does not queue one read per lookup
(whose wait the lookup deadline would count as the store being slow), and the wait is
bounded (past ``max_queued_keys`` waiting keys, or half of ``Timeout.Total`` waiting, a lookup
is a miss, not a failure). The client connects lazily on first use, and again on the next
call if that failed, so a cluster that was down at start-up is picked up by the breaker's probe.

On that path a hit is decoded once, on the read thread: the client's bins dict becomes the
row's fields, and for the default storable (``json_rows``) the row JSON the memory tier would
hold is built there too, so the event loop only joins it into the answer.
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from mly.cache.aerospike_reads import RESULT_TIMEOUT, AerospikeLookups
from mly.cache.base import (
    DICT_HASH_FIELD,
    RowsRead,
    StoredRow,
    StoreUnavailableError,
    StoreWriteError,
    effective_ttl_ms,
)
from mly.cache.coalesce import DEFAULT_MAX_BATCH_KEYS, DEFAULT_MAX_QUEUED_KEYS, CoalescingReader

if TYPE_CHECKING:
    from mly.config.schema import Connection

__all__ = [
    "NATIVE_READS_ENV",
    "AerospikeStore",
    "SyncAerospikeStore",
    "aerospike_client_config",
    "connect_problem",
    "narrow_float",
    "ttl_seconds",
]

_T = TypeVar("_T")
_RESULT_OK = 0
_RESULT_NOT_FOUND = 2
_RESULT_SECURITY_NOT_SUPPORTED = 51
_UNAVAILABLE_RESULTS = frozenset({
    -16,  # batch failed
    -15,  # no response
    -14,  # max error rate exceeded (the node is failing)
    -12,  # max retries exceeded
    -10,  # connection error
    -8,  # invalid node
    -7,  # no more connections
    -6,  # async connection error
    11,  # cluster error
})
NATIVE_READS_ENV = "MLY_AEROSPIKE_NATIVE_READS"
"""Set to ``0`` to send lookups through the official client instead of mly's own batch reads."""
DEFAULT_EXECUTOR_WORKERS = 4
"""Threads for (merged) batch reads; one more thread serves writes, so writes never hold up reads."""
COMMAND_RETRIES = 1
"""Retries of a failed command, on a fresh connection; the breaker handles the rest."""
TEND_INTERVAL_MS = 500
"""How often the client refreshes the cluster map; bounds how long a restarted node stays unseen."""
_FLOAT32 = struct.Struct("<f")
_NUL = "\x00"
"""A key holding a NUL byte is neither looked up nor written: the official client passes keys as
C strings, so it would read and write the record of the key cut at the NUL, which another key
may own (two rows whose keys differ only after a NUL would share one record: a wrong answer)."""


def _import_aerospike() -> Any:
    try:
        import aerospike
    except ImportError as exc:
        raise ImportError(
            "an Aerospike datastore needs the aerospike client: pip install 'mly[aerospike]'"
        ) from exc
    return aerospike


def ttl_seconds(ttl_ms: int) -> int:
    """Record TTL in seconds: rounded up so a sub-second TTL is not 0 (= namespace default)."""
    return max(1, math.ceil(effective_ttl_ms(ttl_ms) / 1000))


def aerospike_client_config(connection: Connection) -> dict[str, Any]:
    """``aerospike.client()`` config from Go's ``Connections[]`` entry.

    ``Hostnames`` -> seeds (``host:port`` entries keep their port, others use ``Port``),
    ``Timeout.Connection`` -> connect
    timeout, ``Socket``/``Total`` -> the socket and total timeout of every
    command. Go leaves its write policy without timeouts; mly bounds writes the
    same way as reads (a write stuck on a dead node holds a worker thread).
    """
    timeout = connection.timeout
    base = {
        "socket_timeout": timeout.ms(timeout.socket),
        "total_timeout": timeout.ms(timeout.total),
        "max_retries": COMMAND_RETRIES,
    }
    config: dict[str, Any] = {
        "hosts": connection.seeds,
        "connect_timeout": timeout.ms(timeout.connection),
        "tend_interval": TEND_INTERVAL_MS,
        "policies": {"read": dict(base), "batch": dict(base), "write": dict(base)},
    }
    # Both or no login: a Python client reading meta/config gets the user but never the password
    # (ClientOptions.store_passwords gives it one).
    if connection.username and connection.password:
        config["user"] = connection.username
        config["password"] = connection.password
    return config


def connect_problem(exc: BaseException) -> str:
    """Why a connect failed, in words an operator can act on (never the password)."""
    text = f"{type(exc).__name__}: {exc}"
    if getattr(exc, "code", None) == _RESULT_SECURITY_NOT_SUPPORTED:
        text += (" (this server has security off, as Community Edition always has: it accepts no "
                 "Username/Password; remove them, or enable security on an Enterprise server)")
    return text


def narrow_float(value: float) -> float:
    """A double that is exactly a float32 value, as that float32's shortest text would parse.

    ``0.30000001192092896`` (Go's widened ``float32(0.3)``) -> ``0.3``; any
    other double is returned unchanged.
    """
    try:
        packed = _FLOAT32.pack(value)
    except OverflowError:  # beyond float32 range: not a float32
        return value
    if _FLOAT32.unpack(packed)[0] != value or not math.isfinite(value):  # (NaN != NaN already)
        return value
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        shortest = float(f"{value:.{digits}g}")
        try:
            if _FLOAT32.pack(shortest) == packed:
                return shortest
        except OverflowError:  # rounded past the float32 maximum
            continue
    return value  # pragma: no cover - unreachable by the 9-digit bound


def _decode_bins(bins: dict[str, Any]) -> bool:
    """Narrow Go's widened float32 doubles in place; True when a value holds a map or a list
    (a JSON writer sorting keys would reorder nested maps: the row JSON then sorts only the
    bin names, as the default storable does). Per bin this is a type test, and for a float a
    pack and an unpack: it runs for every field of every hit."""
    nested = False
    for name, value in bins.items():  # values replaced in place: the dict's size never changes
        kind = type(value)
        if kind is float:
            try:
                if _FLOAT32.unpack(_FLOAT32.pack(value))[0] == value:  # exactly a float32: Go's widening?
                    bins[name] = narrow_float(value)
            except OverflowError:  # beyond float32 range
                pass
        elif kind is list:
            if any(type(v) is float for v in value):
                bins[name] = [narrow_float(v) if type(v) is float else v for v in value]
            nested = True
        elif kind is dict:
            nested = True
    return nested


def _row_json(fields: dict[str, Any], nested: bool) -> bytes:
    """The default storable's row JSON: the fields sorted by name (nested maps left as they are)."""
    if nested:
        return orjson.dumps(dict(sorted(fields.items())))
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


class SyncAerospikeStore:
    """``SyncStore`` over the blocking ``aerospike`` client. Thread-safe."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        namespace: str,
        dataset: str,
        ttl_ms: int,
        read_only: bool = False,
        name: str = "aerospike",
        json_rows: bool = False,
    ) -> None:
        self._aerospike = _import_aerospike()
        self._errors = self._aerospike.exception
        self._unavailable_types: tuple[type[BaseException], ...] = tuple(
            getattr(self._errors, n)
            for n in ("ConnectionError", "ClusterError", "InvalidNodeError",
                      "NoMoreConnectionsError", "AsyncConnectionError")
            if hasattr(self._errors, n)
        )
        self.config = config
        self.namespace = namespace
        self.dataset = dataset
        self.ttl_ms = ttl_ms
        self.read_only = read_only
        self.name = name
        self.json_rows = json_rows
        """Hits carry their row JSON (``StoredRow.json``), built while decoding on the read
        thread; only for the default storable, whose rows are the fields sorted by name."""
        self._write_policy = {
            "key": self._aerospike.POLICY_KEY_SEND,
            "exists": self._aerospike.POLICY_EXISTS_CREATE_OR_REPLACE,
            "ttl": ttl_seconds(ttl_ms),
        }
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_connection(
        cls, connection: Connection, *, namespace: str, dataset: str, ttl_ms: int,
        read_only: bool = False, name: str = "", json_rows: bool = False,
    ) -> SyncAerospikeStore:
        return cls(aerospike_client_config(connection), namespace=namespace, dataset=dataset,
                   ttl_ms=ttl_ms, read_only=read_only, name=name or f"aerospike:{connection.id}",
                   json_rows=json_rows)

    def _connected(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._aerospike.client(self.config).connect()
                except self._errors.AerospikeError as exc:
                    raise StoreUnavailableError(self.name, f"connect: {connect_problem(exc)}") from exc
            return self._client

    def _call(self, fn: Callable[[Any], _T]) -> _T:
        client = self._connected()
        try:
            return fn(client)
        except self._errors.TimeoutError as exc:
            raise TimeoutError(f"{self.name}: {exc}") from exc
        except self._unavailable_types as exc:
            raise StoreUnavailableError(self.name, f"{type(exc).__name__}: {exc}") from exc

    def _key(self, cache_key: str) -> tuple[str, str, str]:
        return (self.namespace, self.dataset, cache_key)

    def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        if not keys:
            return []
        if _NUL in "".join(keys):  # never looked up: see ``_NUL``
            kept = [i for i, key in enumerate(keys) if _NUL not in key]
            found: list[StoredRow | None] = [None] * len(keys)
            for i, row in zip(kept, self.get_many([keys[i] for i in kept]) if kept else [], strict=True):
                found[i] = row
            return found
        batch = self._call(lambda c: c.batch_read([self._key(k) for k in keys]))
        # A batch that could not reach its node does not raise: it says so in its result.
        if batch.result == RESULT_TIMEOUT:
            raise TimeoutError(f"{self.name}: batch read timed out")
        if batch.result in _UNAVAILABLE_RESULTS:
            raise StoreUnavailableError(self.name, f"batch read failed with status {batch.result}")
        if len(batch.batch_records) != len(keys):
            # Once the client has dropped a dead node from its cluster map (a few tend
            # intervals after it died), a batch for its partitions answers status 1
            # with no records at all; a write there raises InvalidNodeError.
            raise StoreUnavailableError(
                self.name, f"batch read answered {len(batch.batch_records)} of {len(keys)} records "
                           f"(status {batch.result}): no node serves them")
        return self._rows(batch.batch_records)

    def _rows(self, records: list[Any]) -> list[StoredRow | None]:
        """Decoded hits. Per record this is most of mly's own share of a batch read's cost,
        so it touches each value once: the client's fresh bins dict becomes the row's fields."""
        json_rows = self.json_rows
        out: list[StoredRow | None] = []
        append = out.append
        for record in records:
            found = record.record
            if found is None or record.result != _RESULT_OK:
                append(None)
                continue
            bins = found[2]
            dict_hash = (bins.pop(DICT_HASH_FIELD, 0) or 0) if bins else 0
            if not bins and not dict_hash:
                append(None)
                continue
            nested = _decode_bins(bins)
            ttl = found[1].get("ttl") if found[1] else None  # whole seconds left; none: never expires
            ttl_ms = None if ttl is None or ttl < 0 or ttl >= 0xFFFFFFFF else ttl * 1000
            append(StoredRow(bins, int(dict_hash), ttl_ms, _row_json(bins, nested) if json_rows else None))
        return out

    def put_many(self, items: Sequence[tuple[str, StoredRow]]) -> None:
        """Write every item; a record the server refuses (a bin name too long) does not stop the others."""
        if self.read_only or not items:
            return
        if any(_NUL in key for key, _ in items):  # never written: see ``_NUL``
            items = [(key, stored) for key, stored in items if _NUL not in key]
        refused: list[tuple[str, BaseException]] = []
        unavailable = self._unavailable_types + (self._errors.TimeoutError,)

        def write(client: Any) -> None:
            for key, stored in items:
                assert stored.fields is not None, "the tiered cache gives a fields store fields"
                bins = {name: value for name, value in stored.fields.items() if value is not None}
                if stored.dict_hash:
                    bins[DICT_HASH_FIELD] = stored.dict_hash
                policy = self._write_policy
                if stored.ttl_ms is not None:  # a copy keeps the time its entry has left
                    if stored.ttl_ms <= 0:
                        continue
                    policy = {**policy, "ttl": min(policy["ttl"], ttl_seconds(stored.ttl_ms))}
                try:
                    client.put(self._key(key), bins, policy=policy)
                except unavailable:
                    raise
                except self._errors.AerospikeError as exc:
                    refused.append((key, exc))

        self._call(write)
        if refused:
            key, exc = refused[0]
            raise StoreWriteError(self.name, len(refused), len(items), f"first {key!r}: {type(exc).__name__}: {exc}")

    def nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node the client knows (the native lookups' routing starts here)."""
        return [(str(host), int(port)) for host, port, *_ in self._call(lambda c: c.get_nodes())]

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class AerospikeStore:
    """``AsyncStore``: ``SyncAerospikeStore`` run in a dedicated thread pool."""

    def __init__(
        self,
        store: SyncAerospikeStore,
        *,
        max_workers: int = DEFAULT_EXECUTOR_WORKERS,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
        max_queued_keys: int = DEFAULT_MAX_QUEUED_KEYS,
        native_reads: bool = True,
    ) -> None:
        self.sync = store
        self.name = store.name
        self.read_only = store.read_only
        self._executor = ThreadPoolExecutor(max_workers=max_workers + 1, thread_name_prefix=f"mly-{store.name}")
        total_ms = store.config.get("policies", {}).get("batch", {}).get("total_timeout", 0)
        queue_wait_s = total_ms / 2000 if total_ms > 0 else 0.0
        self.deadline_slack_s = queue_wait_s + total_ms / 1000
        """How much longer than ``Timeout.Total`` the tiered cache may wait for a lookup. The wait
        for a read thread is bounded here (then a miss, not a failure) and the client bounds the
        time on the wire by ``Timeout.Total`` itself (a slow store still times out, in the client),
        so the cache's own deadline is only a safety net; it must not fire because the event loop
        was busy dispatching a burst of lookups."""
        self.reader = CoalescingReader(store.get_many, self._executor, slots=max_workers,
                                       max_batch_keys=max_batch_keys, max_queued_keys=max_queued_keys,
                                       max_wait_s=queue_wait_s or None, name=store.name)
        self.lookups: AerospikeLookups | None = None
        """The native lookup path (``get_rows``), when it can serve this store: the default storable
        (row JSON is what it builds) and no login (it does not speak the security protocol)."""
        if native_reads and store.json_rows and not store.config.get("user"):
            self.lookups = AerospikeLookups(
                namespace=store.namespace, dataset=store.dataset, name=store.name, list_nodes=store.nodes,
                run=self._run, fallback_read=store.get_many, timeout_ms=total_ms,
                connect_timeout_s=store.config.get("connect_timeout", 1000) / 1000,
            )
            self.get_rows = self._get_rows
            self.deadline_slack_s = 0.0  # no thread to wait for: the lookup's time is all on the wire

    def read_now(self, keys: list[str], dict_hash: int, min_expires_ms: int) -> asyncio.Future[RowsRead] | None:
        """``get_rows`` without a coroutine (``mly.cache.read_now``); ``None`` when the native lookups
        are off or a key holds a NUL (``_NUL``)."""
        lookups = self.lookups
        if lookups is None or lookups.closed or _NUL in "".join(keys):
            return None
        return lookups.start_rows(keys, dict_hash, min_expires_ms)

    @staticmethod
    def rows_of(read: RowsRead, dict_hash: int, min_expires_ms: int) -> RowsRead:
        return read

    async def _get_rows(self, keys: list[str], dict_hash: int, min_expires_ms: int = 0) -> RowsRead:
        assert self.lookups is not None
        if _NUL not in "".join(keys):
            return await self.lookups.get_rows(keys, dict_hash, min_expires_ms)
        kept = [i for i, key in enumerate(keys) if _NUL not in key]  # the others never looked up: see ``_NUL``
        read = await self.lookups.get_rows([keys[i] for i in kept], dict_hash, min_expires_ms)
        rows: list[bytes | None] = [None] * len(keys)
        remaining = [0] * len(keys)
        for j, i in enumerate(kept):
            rows[i], remaining[i] = read.rows[j], read.remaining_ms[j]
        return RowsRead(rows, remaining, read.stale, read.foreign)

    @classmethod
    def from_connection(
        cls, connection: Connection, *, namespace: str, dataset: str, ttl_ms: int,
        read_only: bool = False, name: str = "", max_workers: int = DEFAULT_EXECUTOR_WORKERS,
        max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS, max_queued_keys: int = DEFAULT_MAX_QUEUED_KEYS,
        json_rows: bool = False, native_reads: bool | None = None,
    ) -> AerospikeStore:
        store = SyncAerospikeStore.from_connection(
            connection, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms, read_only=read_only, name=name,
            json_rows=json_rows,
        )
        if native_reads is None:
            native_reads = os.environ.get(NATIVE_READS_ENV, "1") != "0"
        return cls(store, max_workers=max_workers, max_batch_keys=max_batch_keys, max_queued_keys=max_queued_keys,
                   native_reads=native_reads)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        return await self.reader.get_many(keys)

    async def put_many(self, items: Sequence[tuple[str, StoredRow]]) -> None:
        if self.read_only or not items:
            return
        await self._run(self.sync.put_many, list(items))

    async def aclose(self) -> None:
        self.reader.fail_waiting(StoreUnavailableError(self.name, "closed"))
        if self.lookups is not None:
            await self.lookups.aclose()
        await self._run(self.sync.close)
        self._executor.shutdown(wait=False, cancel_futures=True)
