"""The client's cache: ``meta/config``'s datastore, cut to the client's scope.

The tiers are the server's own (``mly.cache``): the memory MRU, Redis or
Aerospike stores behind circuit breakers, ``TieredCache`` for the read order,
upward copies, strict ``dictHash`` checks and write-behind. Here only the scope
(``CacheScope``), the local budget and shared connections are applied.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

from mly._native.mru import MRUCache
from mly.cache.base import AsyncStore, StoredRow
from mly.cache.factory import DEFAULT_LOOKUP_TIMEOUT_S, build_store
from mly.cache.storable import resolve_storable
from mly.cache.tiered import TieredCache
from mly.client.options import CacheScope, ClientOptions
from mly.common.meta import ModelMeta
from mly.config.schema import Connection
from mly.errors import ConfigError

__all__ = ["SharedStores", "build_cache"]


class _Borrowed:
    """A shared store seen by one cache: closing the cache leaves it open."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.name = store.name
        self.read_only = store.read_only

    async def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        return await self.store.get_many(keys)

    async def put_many(self, items: Sequence[tuple[str, StoredRow]]) -> None:
        await self.store.put_many(items)

    async def aclose(self) -> None:
        """Owned by ``SharedStores``, closed by its ``aclose``."""


class SharedStores:
    """Store connections shared by the clients of several models (Go: ``WithConnectionSharing``).

    Give the same object to every client that should share: Redis connections
    are pooled per connection (host, port, database), whatever the dataset;
    Aerospike stores per connection and dataset. Use it from one kind of client
    (all ``Client`` or all ``AsyncClient`` on one event loop), since async
    connections belong to the loop that opened them, and close it after them.
    """

    def __init__(self) -> None:
        self._stores: dict[tuple[Any, ...], AsyncStore] = {}
        self._owned: list[AsyncStore] = []
        """Stores closed one by one; Redis stores are closed through their shared client."""
        self._redis: dict[tuple[Any, ...], Any] = {}

    def store(
        self, connection: Connection, *, namespace: str, dataset: str, ttl_ms: int, read_only: bool, name: str
    ) -> AsyncStore:
        pool_key = (connection.kind, connection.hostnames, connection.effective_port, connection.database,
                    connection.cluster, connection.username, connection.password, connection.tls,
                    connection.tls_ca_file)
        key = (*pool_key, namespace, dataset, ttl_ms, read_only)
        store = self._stores.get(key)
        if store is None:
            if connection.kind == "redis":
                from mly.cache.redis import RedisStore, async_redis_client

                client = self._redis.get(pool_key)
                if client is None:
                    client = self._redis[pool_key] = async_redis_client(connection)
                store = RedisStore(client, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms,
                                   read_only=read_only, name=name)
            else:
                store = build_store(connection, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms,
                                    read_only=read_only, name=name)
                self._owned.append(store)
            self._stores[key] = store
        return _Borrowed(store)

    async def aclose(self) -> None:
        owned, self._owned, self._stores = self._owned, [], {}
        clients, self._redis = self._redis, {}
        for store in owned:
            await store.aclose()
        for client in clients.values():
            await client.aclose()

    def close(self) -> None:
        """``aclose`` for sync clients (their stores run on the client's private loop)."""
        from mly.client._sync import background_loop

        background_loop().run(self.aclose(), timeout_s=10)


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
