"""Redis as an L1/L2 tier (mly's addition to Go's Aerospike), async and sync over one layout.

Layout, one Redis string per cache entry (``redis_wire`` has the byte layout):

- key ``"{namespace}:{dataset}:{cache_key}"``; an empty namespace or dataset is
  left out with its colon (``"{dataset}:{cache_key}"``), so a Redis used only by
  mly needs no namespace. Keys are raw UTF-8; cache keys may contain ``:``, which
  is harmless since nothing ever splits a stored key.
- the value: a 17-byte header (layout version, the dictionary hash the row was
  computed under, the entry's expiry time in epoch milliseconds), then the row's JSON
  exactly as the server answers it. A hit is served as stored: no decoding, no
  re-encoding, whatever the row holds (a ``StoredRow`` written without its JSON, by
  code that uses the store directly, is stored as its fields' JSON, names sorted).
- written with ``SET key value PX ttl_ms`` (0 -> Go's 1 h fallback, or the entry's
  remaining TTL when it is a copy from another tier). A lookup is one ``MGET`` (on a
  cluster, one pipeline of ``GET`` per node), so its cost does not grow with commands
  per key. The TTL a copy keeps comes from the expiry time in the value, by this
  machine's clock; Redis itself expires the key by ``PX``.

Entries of the hash layout earlier versions wrote read as misses (``MGET`` answers
nil for a key that is not a string) and are replaced by the next write of their key.

A single Redis uses the first ``Hostnames`` entry (which may carry its own port,
``host:port``). With ``Cluster: true`` every entry is a startup node of a Redis Cluster
and redis-py's cluster client routes each command to the master of its key's slot:
every command here names one key, so a pipeline never crosses slots (the client
splits it per node, one round trip per node). No Sentinel.

Retries: a connection error is retried once, at once, on a fresh connection;
timeouts never are. After Redis restarts, every pooled connection still points at
the dead process and fails on first use ("Connection closed by server"); without
the retry each of them would count as a new outage and reopen the breaker just
after its probe found Redis back. A refused connect is retried too, which costs
one more refused connect (fast), and the whole call stays bounded by the tiered
cache's deadline. Anything longer (backoff, probes) is the breaker's job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import orjson

from mly._native.redis_wire import ENTRY_HEADER_BYTES, entry_header, pack_entry, pack_key_command, unpack_entries
from mly.cache.base import RowsRead, StoredRow, StoreUnavailableError, effective_ttl_ms
from mly.cache.cluster_reads import ClusterLookups, settle_refusals
from mly.cache.resp import PipelinedConnection, RespEndpoint

if TYPE_CHECKING:
    import redis as redis_sync
    import redis.asyncio as redis_async

    from mly.config.schema import Connection

__all__ = [
    "DEAD_CONNECTION_RETRIES",
    "RedisStore",
    "SyncRedisStore",
    "async_redis_client",
    "entry_key",
    "redis_client_options",
    "sync_redis_client",
]

log = logging.getLogger("mly.cache")


def _import_redis() -> Any:
    try:
        import redis
        import redis.asyncio
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "a Redis datastore needs the redis package: pip install 'mly[redis]'"
        ) from exc
    return redis


def entry_key(namespace: str, dataset: str, cache_key: str) -> str:
    """The Redis key of one entry (see module docstring)."""
    prefix = ":".join(part for part in (namespace, dataset) if part)
    return f"{prefix}:{cache_key}" if prefix else cache_key


def redis_client_options(connection: Connection) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis`` / ``redis.asyncio.Redis`` from a config connection.

    ``Timeout.Total`` bounds each socket operation and ``Timeout.Connection`` the
    connect, as the Aerospike connection maps them.
    """
    _import_redis()
    seeds = connection.seeds
    if not seeds:
        raise ValueError(f"connection {connection.id!r} has no Hostnames")
    timeout = connection.timeout
    options: dict[str, Any] = {
        "host": seeds[0][0],
        "port": seeds[0][1],
        "db": connection.database,
        "socket_timeout": timeout.ms(timeout.total) / 1000.0,
        "socket_connect_timeout": timeout.ms(timeout.connection) / 1000.0,
        "decode_responses": False,
        "client_name": "mly",
    }
    if connection.username:  # an ACL user; one with ``nopass`` takes any password, "" included
        options["username"] = connection.username
        options["password"] = connection.password
    elif connection.password:
        options["password"] = connection.password
    if connection.tls:
        options["ssl"] = True
        if connection.tls_ca_file:
            options["ssl_ca_certs"] = connection.tls_ca_file
    return options


DEAD_CONNECTION_RETRIES = 1
"""Retries of a call that failed with a connection error, each on a fresh connection."""


def _cluster_options(connection: Connection, cluster_module: Any) -> dict[str, Any]:
    options = redis_client_options(connection)
    del options["host"], options["port"], options["db"]
    options["startup_nodes"] = [cluster_module.ClusterNode(host, port) for host, port in connection.seeds]
    # A slot whose master died has no owner until its replica is promoted: lookups of other
    # slots keep answering (a pipeline that touches it fails as a whole: the breaker counts it).
    # Retries follow ``retry``.
    options["require_full_coverage"] = False
    return options


def async_redis_client(connection: Connection) -> Any:
    """``redis.asyncio.Redis`` (or ``RedisCluster`` with ``Cluster: true``) for ``connection``."""
    redis = _import_redis()
    from redis.asyncio.retry import Retry

    retry = Retry(redis.backoff.NoBackoff(), DEAD_CONNECTION_RETRIES, supported_errors=(redis.ConnectionError,))
    if connection.cluster:
        import redis.asyncio.cluster as cluster

        return cluster.RedisCluster(**_cluster_options(connection, cluster), retry=retry)
    return redis.asyncio.Redis(**redis_client_options(connection), retry=retry)


def sync_redis_client(connection: Connection) -> Any:
    """The blocking twin of ``async_redis_client``."""
    redis = _import_redis()
    retry = redis.retry.Retry(redis.backoff.NoBackoff(), DEAD_CONNECTION_RETRIES,
                              supported_errors=(redis.ConnectionError,))
    if connection.cluster:
        import redis.cluster as cluster

        return cluster.RedisCluster(**_cluster_options(connection, cluster), retry=retry)
    return redis.Redis(**redis_client_options(connection), retry=retry)


def _entry_value(stored: StoredRow, ttl_ms: int, now_ms: int) -> bytes:
    row_json = stored.json
    if row_json is None:  # written through the store itself, not by a tiered cache
        row_json = orjson.dumps(dict(sorted((stored.fields or {}).items())))
    return pack_entry(row_json, stored.dict_hash, now_ms + ttl_ms)


def _stored_rows(values: list[Any], now_ms: int) -> list[StoredRow | None]:
    """Entries as ``StoredRow`` whatever their hash (``get_many``; lookups use ``get_rows``)."""
    out: list[StoredRow | None] = []
    for value in values:
        header = entry_header(value) if type(value) is bytes else None
        if header is None or header[1] <= now_ms:
            out.append(None)
            continue
        row_json = value[ENTRY_HEADER_BYTES:]
        out.append(StoredRow(orjson.loads(row_json), header[0], header[1] - now_ms, row_json))
    return out


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _endpoint_of(client: Any, name: str) -> RespEndpoint:
    """Where a single-Redis redis-py client connects, for the pipelined lookup connection."""
    kwargs = client.connection_pool.connection_kwargs
    return RespEndpoint(
        kwargs.get("host", "localhost"), int(kwargs.get("port", 6379)), db=int(kwargs.get("db") or 0),
        username=kwargs.get("username") or "", password=kwargs.get("password") or "",
        tls="ssl_cert_reqs" in kwargs, tls_ca_file=kwargs.get("ssl_ca_certs") or "",
        connect_timeout_s=float(kwargs.get("socket_connect_timeout") or 1.0),
        reply_timeout_s=float(kwargs.get("socket_timeout") or 1.0), name=name,
    )


class _RedisLayout:
    """Everything but I/O, shared by the async and sync stores."""

    keeps_row_json = True
    """Entries hold the row's JSON as served (``StoredRow.json``), not the storable's fields."""

    def __init__(
        self,
        client: Any,
        *,
        namespace: str = "",
        dataset: str = "",
        ttl_ms: int,
        read_only: bool = False,
        name: str = "redis",
    ) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.dataset = dataset
        self.ttl_ms = effective_ttl_ms(ttl_ms)
        self.read_only = read_only
        self._prefix = self.key("").encode()
        self._redis = redis = _import_redis()
        errors = redis.exceptions
        self._cluster = isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))
        # A cluster that lost a slot's master (until its replica takes over), or that no
        # node of answers, is down for that call like a single Redis that is.
        self._outage: tuple[type[BaseException], ...] = (
            redis.ConnectionError, redis.TimeoutError, errors.ClusterError, errors.RedisClusterException,
            errors.TryAgainError,
        )

    @staticmethod
    def _make_client(connection: Connection) -> Any:
        raise NotImplementedError

    @classmethod
    def from_connection(
        cls,
        connection: Connection,
        *,
        namespace: str,
        dataset: str,
        ttl_ms: int,
        read_only: bool = False,
        name: str = "",
    ) -> Self:
        client = cls._make_client(connection)
        return cls(client, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms, read_only=read_only,
                   name=name or f"redis:{connection.id}")

    def key(self, cache_key: str) -> str:
        return entry_key(self.namespace, self.dataset, cache_key)

    def _queue_reads(self, pipe: Any, keys: Sequence[str]) -> None:
        """One ``GET`` per key: a cluster pipeline splits them per node, one round trip each."""
        for key in keys:
            pipe.get(self.key(key))

    def _queue_writes(self, pipe: Any, items: Sequence[tuple[str, StoredRow]]) -> None:
        now_ms = _now_ms()
        for key, stored in items:
            ttl_ms = self.ttl_ms if stored.ttl_ms is None else min(self.ttl_ms, stored.ttl_ms)
            if ttl_ms <= 0:
                continue  # a copy of an entry that has just expired
            pipe.set(self.key(key), _entry_value(stored, ttl_ms, now_ms), px=ttl_ms)

    def _rows(self, values: list[Any], dict_hash: int, min_expires_ms: int) -> RowsRead:
        rows, remaining, stale, foreign = unpack_entries(values, dict_hash, _now_ms(), min_expires_ms)
        if foreign:
            log.warning("%s: %d of %d values are not mly entries (another program's keys under prefix %r?)",
                        self.name, foreign, len(values), self._prefix.decode())
        return RowsRead(rows, remaining, stale, foreign)

    def _unavailable(self, exc: BaseException) -> OSError:
        """redis-py errors as the builtin kinds the tiered cache counts (timeouts apart)."""
        if isinstance(exc, self._redis.TimeoutError):
            return TimeoutError(f"{self.name}: {exc}")
        return StoreUnavailableError(self.name, f"{type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, prefix={self.key('')!r})"


class RedisStore(_RedisLayout):
    """``AsyncStore`` over Redis: lookups on one pipelined connection (a single Redis) or a
    ``GET`` pipeline (a cluster), writes through ``redis.asyncio`` pipelines."""

    client: redis_async.Redis

    def __init__(self, client: Any, **options: Any) -> None:
        super().__init__(client, **options)
        self._lookups: PipelinedConnection | None = None
        self._cluster_lookups: ClusterLookups | None = None
        if self._cluster:
            self._cluster_lookups = ClusterLookups(client, self.name)
        else:
            self._lookups = PipelinedConnection(_endpoint_of(client, self.name))

    @staticmethod
    def _make_client(connection: Connection) -> Any:
        return async_redis_client(connection)

    async def _read(self, keys: list[str]) -> list[Any]:
        if self._lookups is None:
            assert self._cluster_lookups is not None
            return await self._cluster_lookups.read(self._prefix, keys)
        values = await self._lookups.call(pack_key_command(b"MGET", self._prefix, keys))
        if isinstance(values, Exception):  # an error reply: LOADING, NOAUTH after a restart...
            raise StoreUnavailableError(self.name, str(values))
        return values  # type: ignore[no-any-return]

    async def get_rows(self, keys: list[str], dict_hash: int, min_expires_ms: int = 0) -> RowsRead:
        """The lookup path: row JSON for entries of ``dict_hash`` expiring after ``min_expires_ms``."""
        if not keys:
            return RowsRead([], [], 0)
        return self._rows(await self._read(keys), dict_hash, min_expires_ms)

    def read_now(self, keys: list[str], dict_hash: int, min_expires_ms: int) -> asyncio.Future[Any] | None:
        """``get_rows`` without a coroutine (``mly.cache.read_now``): the ``MGET`` sent, its reply's
        future for ``rows_of`` (on a cluster, one ``GET`` pipeline per master, ``ClusterLookups.read_now``);
        ``None`` when a lookup connection is not open (or is full)."""
        try:
            if self._lookups is None:
                assert self._cluster_lookups is not None
                return self._cluster_lookups.read_now(self._prefix, keys)
            return self._lookups.send_now(pack_key_command(b"MGET", self._prefix, keys))
        except TimeoutError:  # too many commands in flight: the common path counts it
            return None

    def rows_of(self, values: Any, dict_hash: int, min_expires_ms: int) -> RowsRead:
        """``read_now``'s reply as ``get_rows`` answers it."""
        if isinstance(values, Exception):  # an error reply: LOADING, NOAUTH after a restart...
            raise StoreUnavailableError(self.name, str(values))
        if self._cluster_lookups is not None:
            settle_refusals(values, self.name)
        return self._rows(values, dict_hash, min_expires_ms)

    async def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        if not keys:
            return []
        return _stored_rows(await self._read(list(keys)), _now_ms())

    async def put_many(self, items: Sequence[tuple[str, StoredRow]]) -> None:
        if self.read_only or not items:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                self._queue_writes(pipe, items)
                await pipe.execute()
        except self._outage as exc:
            raise self._unavailable(exc) from exc

    async def aclose(self) -> None:
        if self._lookups is not None:
            await self._lookups.aclose()
        if self._cluster_lookups is not None:
            await self._cluster_lookups.aclose()
        await self.client.aclose()


class SyncRedisStore(_RedisLayout):
    """``SyncStore`` over blocking ``redis.Redis``; same layout as ``RedisStore``."""

    client: redis_sync.Redis

    @staticmethod
    def _make_client(connection: Connection) -> Any:
        return sync_redis_client(connection)

    def _read(self, keys: list[str]) -> list[Any]:
        try:
            if not self._cluster:
                return self.client.execute_command("MGET", *[self.key(key) for key in keys])  # type: ignore[no-any-return]
            with self.client.pipeline(transaction=False) as pipe:
                self._queue_reads(pipe, keys)
                values = pipe.execute(raise_on_error=False)
            return settle_refusals(values, self.name)
        except self._outage as exc:
            raise self._unavailable(exc) from exc

    def get_rows(self, keys: list[str], dict_hash: int, min_expires_ms: int = 0) -> RowsRead:
        if not keys:
            return RowsRead([], [], 0)
        return self._rows(self._read(keys), dict_hash, min_expires_ms)

    def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        if not keys:
            return []
        return _stored_rows(self._read(list(keys)), _now_ms())

    def put_many(self, items: Sequence[tuple[str, StoredRow]]) -> None:
        if self.read_only or not items:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                self._queue_writes(pipe, items)
                pipe.execute()
        except self._outage as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        self.client.close()
