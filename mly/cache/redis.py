"""Redis as an L1/L2 tier (mly's addition to Go's Aerospike), async and sync over one layout.

Layout, one Redis hash per cache entry:

- key ``"{namespace}:{dataset}:{cache_key}"``; an empty namespace or dataset is
  left out with its colon (``"{dataset}:{cache_key}"``), so a Redis used only by
  mly needs no namespace. Keys are raw UTF-8; cache keys may contain ``:``, which
  is harmless since nothing ever splits a stored key.
- one hash field per row field, holding that value as orjson JSON text, so
  every type (int, float, str, bool, null, lists, nested dicts) comes back as it
  went in; plus field ``dictHash`` holding the dictionary hash as decimal text
  (always written, 0 included: Redis entries are mly-only, no Go reader).
- TTL: ``PEXPIRE ttl_ms`` (0 -> Go's 1 h fallback) in the same pipeline as the
  write, or the entry's remaining TTL when it is a copy from another tier. The
  write is ``DEL`` + ``HSET`` + ``PEXPIRE``: the ``DEL`` drops fields a previous
  model version wrote that this one no longer has. A read is ``HGETALL`` +
  ``PTTL``, so a copy of the entry can keep its remaining TTL.

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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import orjson

from mly.cache.base import DICT_HASH_FIELD, StoredRow, StoreUnavailableError, effective_ttl_ms

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

_DICT_HASH_BYTES = DICT_HASH_FIELD.encode()


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


def _encode(stored: StoredRow) -> dict[str, bytes]:
    mapping = {name: orjson.dumps(value) for name, value in stored.fields.items()}
    mapping[DICT_HASH_FIELD] = str(stored.dict_hash).encode()
    return mapping


def _decode(raw: dict[Any, Any] | None, pttl: int) -> StoredRow | None:
    """One entry from ``HGETALL`` and ``PTTL`` (-1: no expiry, -2: gone since)."""
    if not raw or pttl == -2:
        return None
    dict_hash = 0
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        if name == _DICT_HASH_BYTES:
            dict_hash = int(value)
        else:
            fields[name.decode()] = orjson.loads(value)
    return StoredRow(fields, dict_hash, pttl if pttl >= 0 else None)


def _decode_all(raw: Sequence[Any]) -> list[StoredRow | None]:
    """Replies of ``_queue_reads``: ``HGETALL``, ``PTTL`` per key."""
    return [_decode(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]


class _RedisLayout:
    """Everything but I/O, shared by the async and sync stores."""

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
        self._redis = redis = _import_redis()
        errors = redis.exceptions
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
        for key in keys:
            redis_key = self.key(key)
            pipe.hgetall(redis_key)
            pipe.pttl(redis_key)

    def _queue_writes(self, pipe: Any, items: Sequence[tuple[str, StoredRow]]) -> None:
        for key, stored in items:
            ttl_ms = self.ttl_ms if stored.ttl_ms is None else min(self.ttl_ms, stored.ttl_ms)
            if ttl_ms <= 0:
                continue  # a copy of an entry that has just expired
            redis_key = self.key(key)
            pipe.delete(redis_key)
            pipe.hset(redis_key, mapping=_encode(stored))
            pipe.pexpire(redis_key, ttl_ms)

    def _unavailable(self, exc: BaseException) -> OSError:
        """redis-py errors as the builtin kinds the tiered cache counts (timeouts apart)."""
        if isinstance(exc, self._redis.TimeoutError):
            return TimeoutError(f"{self.name}: {exc}")
        return StoreUnavailableError(self.name, f"{type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, prefix={self.key('')!r})"


class RedisStore(_RedisLayout):
    """``AsyncStore`` over ``redis.asyncio``: one pipeline per ``get_many``/``put_many``."""

    client: redis_async.Redis

    @staticmethod
    def _make_client(connection: Connection) -> Any:
        return async_redis_client(connection)

    async def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        if not keys:
            return []
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                self._queue_reads(pipe, keys)
                raw = await pipe.execute()
        except self._outage as exc:
            raise self._unavailable(exc) from exc
        return _decode_all(raw)

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
        await self.client.aclose()


class SyncRedisStore(_RedisLayout):
    """``SyncStore`` over blocking ``redis.Redis``; same layout as ``RedisStore``."""

    client: redis_sync.Redis

    @staticmethod
    def _make_client(connection: Connection) -> Any:
        return sync_redis_client(connection)

    def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        if not keys:
            return []
        try:
            with self.client.pipeline(transaction=False) as pipe:
                self._queue_reads(pipe, keys)
                raw = pipe.execute()
        except self._outage as exc:
            raise self._unavailable(exc) from exc
        return _decode_all(raw)

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
