"""Cache tiers shared by the server and the client: memory, then L1, then L2.

TensorFlow- and Starlette-free. The Redis and Aerospike client libraries are
imported only by ``mly.cache.redis`` / ``mly.cache.aerospike``, which
``build_datastore`` imports only for a configured connection of that kind.
"""

from __future__ import annotations

from mly.cache.base import AsyncStore, StoredRow, StoreUnavailableError, StoreWriteError, SyncStore
from mly.cache.breaker import BreakerState, CircuitBreaker, ExponentialBackoff
from mly.cache.factory import build_datastore, build_store
from mly.cache.stats import CacheCounters
from mly.cache.storable import Storable, register_storable, resolve_storable
from mly.cache.tiered import TieredCache

__all__ = [
    "AsyncStore",
    "BreakerState",
    "CacheCounters",
    "CircuitBreaker",
    "ExponentialBackoff",
    "Storable",
    "StoreUnavailableError",
    "StoreWriteError",
    "StoredRow",
    "SyncStore",
    "TieredCache",
    "build_datastore",
    "build_store",
    "register_storable",
    "resolve_storable",
]
