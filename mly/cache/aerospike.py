"""Aerospike as an L1/L2 tier, laid out exactly as Go viant/mly writes it.

Layout (reference §3.4, §4.1; Go readers and writers share these sets):

- key ``(namespace, set=dataset, user key=cache key)``, written with
  ``send_key`` so the user key is stored as Go's server writes do;
- one bin per row field with its native value (int, float, str, list, map) plus
  bin ``dictHash`` (int) only when the hash is non-zero; a missing bin reads as 0;
- TTL in whole seconds, ``ceil(ttl_ms / 1000)``, 0 -> 3600 as Go's WritePolicy.

Limits of Aerospike that the layout inherits from Go: a bin name has at most 15
bytes, and a ``None`` value deletes its bin, so a ``null`` field comes back absent.

The official client is blocking. ``SyncAerospikeStore`` is the plain store (for
the sync client); ``AerospikeStore`` runs the same calls in a small dedicated
thread pool so the event loop never blocks on the network. The client connects
lazily on first use and again after a connection failure, so a cluster that was
down at start-up is picked up by the breaker's probe (Go re-creates its client
the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from mly.cache.base import DICT_HASH_FIELD, StoredRow, StoreUnavailableError, effective_ttl_ms

if TYPE_CHECKING:
    from mly.config.schema import Connection

__all__ = ["AerospikeStore", "SyncAerospikeStore", "aerospike_client_config", "ttl_seconds"]

_T = TypeVar("_T")
_RESULT_OK = 0
_RESULT_NOT_FOUND = 2
DEFAULT_EXECUTOR_WORKERS = 4


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
    """``aerospike.client()`` config: Connection -> connect timeout, Socket/Total -> policies."""
    timeout = connection.timeout
    base = {
        "socket_timeout": timeout.ms(timeout.socket),
        "total_timeout": timeout.ms(timeout.total),
    }
    return {
        "hosts": [(host, connection.effective_port) for host in connection.hosts],
        "connect_timeout": timeout.ms(timeout.connection),
        "policies": {"read": dict(base), "batch": dict(base), "write": dict(base)},
    }


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
        self._meta = {"ttl": ttl_seconds(ttl_ms)}
        self._write_policy = {"key": self._aerospike.POLICY_KEY_SEND}
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_connection(
        cls, connection: Connection, *, namespace: str, dataset: str, ttl_ms: int,
        read_only: bool = False, name: str = "",
    ) -> SyncAerospikeStore:
        return cls(aerospike_client_config(connection), namespace=namespace, dataset=dataset,
                   ttl_ms=ttl_ms, read_only=read_only, name=name or f"aerospike:{connection.id}")

    def _connected(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._aerospike.client(self.config).connect()
                except self._errors.AerospikeError as exc:
                    raise StoreUnavailableError(self.name, f"connect: {exc}") from exc
            return self._client

    def _call(self, fn: Callable[[Any], _T]) -> _T:
        client = self._connected()
        try:
            return fn(client)
        except self._errors.TimeoutError as exc:
            raise TimeoutError(f"{self.name}: {exc}") from exc
        except self._unavailable_types as exc:
            self._drop_client(client)
            raise StoreUnavailableError(self.name, f"{type(exc).__name__}: {exc}") from exc

    def _drop_client(self, client: Any) -> None:
        """Forget a client that lost the cluster; the next call (the probe) reconnects."""
        with self._lock:
            if self._client is client:
                self._client = None
        with contextlib.suppress(Exception):  # closing a broken client may fail too
            client.close()

    def _key(self, cache_key: str) -> tuple[str, str, str]:
        return (self.namespace, self.dataset, cache_key)

    def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        if not keys:
            return []
        batch = self._call(lambda c: c.batch_read([self._key(k) for k in keys]))
        out: list[StoredRow | None] = []
        for record in batch.batch_records:
            if record.result != _RESULT_OK or record.record is None:
                out.append(None)
                continue
            bins = dict(record.record[2] or {})
            dict_hash = bins.pop(DICT_HASH_FIELD, 0) or 0
            out.append(StoredRow(bins, int(dict_hash)) if bins or dict_hash else None)
        return out

    def put_many(self, items: Sequence[tuple[str, StoredRow]]) -> None:
        if self.read_only or not items:
            return

        def write(client: Any) -> None:
            for key, stored in items:
                bins = dict(stored.fields)
                if stored.dict_hash:
                    bins[DICT_HASH_FIELD] = stored.dict_hash
                client.put(self._key(key), bins, self._meta, self._write_policy)

        self._call(write)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class AerospikeStore:
    """``AsyncStore``: ``SyncAerospikeStore`` run in a dedicated thread pool."""

    def __init__(self, store: SyncAerospikeStore, *, max_workers: int = DEFAULT_EXECUTOR_WORKERS) -> None:
        self.sync = store
        self.name = store.name
        self.read_only = store.read_only
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"mly-{store.name}")

    @classmethod
    def from_connection(
        cls, connection: Connection, *, namespace: str, dataset: str, ttl_ms: int,
        read_only: bool = False, name: str = "", max_workers: int = DEFAULT_EXECUTOR_WORKERS,
    ) -> AerospikeStore:
        store = SyncAerospikeStore.from_connection(
            connection, namespace=namespace, dataset=dataset, ttl_ms=ttl_ms, read_only=read_only, name=name
        )
        return cls(store, max_workers=max_workers)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        if not keys:
            return []
        return await self._run(self.sync.get_many, list(keys))

    async def put_many(self, items: Sequence[tuple[str, StoredRow]]) -> None:
        if self.read_only or not items:
            return
        await self._run(self.sync.put_many, list(items))

    async def aclose(self) -> None:
        await self._run(self.sync.close)
        self._executor.shutdown(wait=False, cancel_futures=True)
