"""The client's cache: ``meta/config``'s datastore, cut to the client's scope.

The tiers are the server's own (``mly.cache``): the memory MRU, Redis or
Aerospike stores behind circuit breakers, ``TieredCache`` for the read order,
upward copies, strict ``dictHash`` checks and write-behind. Here only the scope
(``CacheScope``), the local budget and shared connections (``_shared``) are applied.
"""

from __future__ import annotations

import asyncio
import dataclasses

from mly._native.mru import MRUCache
from mly.cache.base import AsyncStore
from mly.cache.factory import DEFAULT_LOOKUP_TIMEOUT_S, build_store
from mly.cache.storable import resolve_storable
from mly.cache.tiered import TieredCache
from mly.client.options import CacheScope, ClientOptions
from mly.common.meta import ModelMeta
from mly.config.schema import Connection
from mly.errors import ConfigError

__all__ = ["build_cache", "start_cache"]


def _connection(meta: ModelMeta, key: str, connection_id: str) -> Connection:
    for connection in meta.connections:
        if connection.id == connection_id:
            return connection
    known = ", ".join(c.id for c in meta.connections) or "none"
    raise ConfigError(f"meta/config {key}", f"unknown connection {connection_id!r} (known: {known})")


def build_cache(meta: ModelMeta, options: ClientOptions) -> TieredCache | None:
    """The tiers of the model's datastore within ``options.cache_scope``; None when nothing is left.

    Lookups wait at most the largest ``Timeout.Total`` of the stores used, as on
    the server; nothing connects before the first lookup.
    """
    datastore = meta.datastore
    if datastore is None or datastore.disabled:
        return None
    scope = options.cache_scope
    memory = None
    if CacheScope.LOCAL in scope:
        size_mb = options.cache_size_mb or (
            datastore.cache.effective_size_mb if datastore.cache is not None else options.default_cache_size_mb
        )
        memory = MRUCache(size_mb << 20)
    shared = options.shared_stores
    timeouts: list[float] = []

    def store(key: str, connection_id: str, namespace: str, dataset: str, read_only: bool) -> AsyncStore:
        connection = _connection(meta, key, connection_id)
        password = (options.store_passwords or {}).get(connection.id)
        if password:
            connection = dataclasses.replace(connection, password=password)
        timeouts.append(connection.timeout.ms(connection.timeout.total) / 1000.0)
        name = f"{connection.kind}:{connection.id}:{dataset}"
        ttl_ms = datastore.time_to_live_ms  # L2 is written with the L1 TTL, as the server does
        if shared is not None:
            return shared.store(connection, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms,
                                read_only=read_only, name=name)
        return build_store(connection, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms,
                           read_only=read_only, name=name)

    l1 = l2 = None
    if CacheScope.L1 in scope and datastore.connection:
        l1 = store("Connection", datastore.connection, datastore.namespace, datastore.dataset, datastore.read_only)
    if CacheScope.L2 in scope and datastore.l2 is not None and datastore.l2.connection:
        ref = datastore.l2
        l2 = store("L2.Connection", ref.connection, ref.namespace, ref.dataset, ref.read_only)
    if memory is None and l1 is None and l2 is None:
        return None
    try:
        storable = resolve_storable(datastore.storable)
    except ValueError as exc:
        raise ConfigError("meta/config Storable", str(exc)) from exc
    return TieredCache(
        memory, l1, l2,
        storable=storable,
        ttl_ms=datastore.time_to_live_ms,
        timeout_s=max(timeouts, default=DEFAULT_LOOKUP_TIMEOUT_S),
        retry_time_ms=datastore.retry_time_ms,
    )


async def start_cache(cache: TieredCache) -> None:
    """Start the write-behind task on the running loop (for writes from other threads)."""
    cache.start()
    await asyncio.sleep(0)
