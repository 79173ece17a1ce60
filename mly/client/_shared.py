"""``SharedStores``: store connections shared by several clients (Go: ``WithConnectionSharing``).

Below ``options`` (which names it) and ``_stores`` (which asks it for stores):
it needs only the server's store builders and the sync clients' loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mly.cache.base import AsyncStore, StoredRow
from mly.cache.factory import build_store
from mly.client._loop import background_loop
from mly.config.schema import Connection

__all__ = ["SharedStores"]


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
        background_loop().run(self.aclose(), timeout_s=10)
