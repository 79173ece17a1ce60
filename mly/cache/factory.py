"""Build the ``TieredCache`` of a ``Datastores[]`` entry from the config.

Tiers, as in Go: memory iff ``Cache`` is set (its byte budget is
``Cache.effective_size_mb``), L1 iff ``Connection`` is set, L2 iff ``L2`` is set.
Unlike Go an L2 without an L1 is allowed (any subset of tiers).
``Connection.Kind`` picks Redis or Aerospike per tier, and a store's client
library is imported only when a connection of its kind is configured, so the
client installs without either.

TTLs: memory and L1 use ``TimeToLiveMs``. L2 writes use the same L1 TTL, as Go's
server does (it writes L2 with the L1 write policy); ``L2.TimeToLiveMs`` is not
applied. The lookup deadline per external tier is the largest ``Timeout.Total``
of the configured connections.
"""

from __future__ import annotations

from collections.abc import Callable

from mly.cache.base import AsyncStore
from mly.cache.breaker import CircuitBreaker
from mly.cache.stats import CacheCounters
from mly.cache.storable import DictStorable, resolve_storable
from mly.cache.tiered import TieredCache
from mly.config.schema import Config, Connection, Datastore
from mly.errors import ConfigError

__all__ = ["build_datastore", "build_store"]

DEFAULT_LOOKUP_TIMEOUT_S = 0.45
"""Go's default ``Timeout.Total`` (450 ms), used when no external tier is configured."""


def build_store(
    connection: Connection, *, namespace: str, dataset: str, ttl_ms: int, read_only: bool, name: str,
    json_rows: bool = False,
) -> AsyncStore:
    """An async store of ``connection.kind``; the client library is imported here.

    A missing client library is a ``ConfigError`` naming the connection and the
    extra to install, so the server refuses to start with that message. ``json_rows``: the
    datastore uses the default storable, so a store that decodes fields itself (Aerospike)
    may hand back each hit's row JSON too.
    """
    try:
        return _build_store(connection, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms,
                            read_only=read_only, name=name, json_rows=json_rows)
    except ImportError as exc:
        raise ConfigError(f"Connections[{connection.id}].Kind", str(exc)) from exc


def _build_store(
    connection: Connection, *, namespace: str, dataset: str, ttl_ms: int, read_only: bool, name: str,
    json_rows: bool,
) -> AsyncStore:
    if connection.kind == "redis":
        from mly.cache.redis import RedisStore

        return RedisStore.from_connection(
            connection, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms, read_only=read_only, name=name
        )
    from mly.cache.aerospike import AerospikeStore

    return AerospikeStore.from_connection(
        connection, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms, read_only=read_only, name=name,
        json_rows=json_rows,
    )


def _connection(config: Config, key: str, connection_id: str) -> Connection:
    connection = config.connection(connection_id)
    if connection is None:
        known = ", ".join(c.id for c in config.connections) or "none"
        raise ConfigError(key, f"unknown connection {connection_id!r} (known: {known})")
    if connection.kind == "aerospike" and not connection.hosts:
        raise ConfigError(key, f"connection {connection_id!r} has no Hostnames")
    return connection


def build_datastore(
    datastore: Datastore,
    config: Config,
    *,
    counters: CacheCounters | None = None,
    breaker_factory: Callable[[str], CircuitBreaker] | None = None,
) -> TieredCache:
    """The datastore's cache tiers; nothing connects until the first lookup or write."""
    where = f"Datastores[{datastore.id}]"
    try:
        storable = resolve_storable(datastore.storable)
    except ValueError as exc:
        raise ConfigError(f"{where}.Storable", str(exc)) from exc
    json_rows = type(storable) is DictStorable

    memory = None
    if datastore.cache is not None:
        from mly._native.mru import MRUCache

        memory = MRUCache(datastore.cache.effective_size_mb << 20)

    timeouts: list[float] = []
    l1: AsyncStore | None = None
    if datastore.connection:
        connection = _connection(config, f"{where}.Connection", datastore.connection)
        timeouts.append(connection.timeout.ms(connection.timeout.total) / 1000.0)
        l1 = build_store(
            connection, namespace=datastore.namespace, dataset=datastore.dataset,
            ttl_ms=datastore.time_to_live_ms, read_only=datastore.read_only,
            name=f"{connection.kind}:{connection.id}:{datastore.dataset}", json_rows=json_rows,
        )
    l2: AsyncStore | None = None
    if datastore.l2 is not None and datastore.l2.connection:
        ref = datastore.l2
        connection = _connection(config, f"{where}.L2.Connection", ref.connection)
        timeouts.append(connection.timeout.ms(connection.timeout.total) / 1000.0)
        l2 = build_store(
            connection, namespace=ref.namespace, dataset=ref.dataset,
            ttl_ms=datastore.time_to_live_ms,  # Go: L2 is written with the L1 write policy
            read_only=ref.read_only, name=f"{connection.kind}:{connection.id}:{ref.dataset}",
            json_rows=json_rows,
        )
    return TieredCache(
        memory, l1, l2,
        storable=storable,
        ttl_ms=datastore.time_to_live_ms,
        timeout_s=max(timeouts, default=DEFAULT_LOOKUP_TIMEOUT_S),
        retry_time_ms=datastore.retry_time_ms,
        counters=counters,
        breaker_factory=breaker_factory,
    )
