"""What every external cache store (Redis, Aerospike) offers the tiered cache.

A store deals in ``StoredRow`` values: the row's storable fields plus the
dictionary hash it was computed under. Stores know nothing of JSON bytes, the
memory tier, breakers or counters; ``tiered.TieredCache`` adds those once for all
stores, so a new store is only its I/O.

Error contract: a store raises ``StoreUnavailableError`` (a ``ConnectionError``)
or ``TimeoutError`` when it cannot be reached; that trips the store's circuit
breaker. Any other exception means the store answered but something was wrong
(a bad value, a wrong key type): it is counted but keeps the breaker closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DICT_HASH_FIELD",
    "FALLBACK_TTL_MS",
    "AsyncStore",
    "RowsRead",
    "StoreUnavailableError",
    "StoreWriteError",
    "StoredRow",
    "SyncStore",
    "effective_ttl_ms",
]

DICT_HASH_FIELD = "dictHash"
"""Field (Redis) / bin (Aerospike) holding the entry's dictionary hash, as in Go."""

FALLBACK_TTL_MS = 3_600_000
"""Go's WritePolicy turns a zero TTL into one hour; mly does the same on every tier."""


def effective_ttl_ms(ttl_ms: int) -> int:
    """``ttl_ms`` if positive, else Go's one-hour fallback (an entry must expire)."""
    return ttl_ms if ttl_ms > 0 else FALLBACK_TTL_MS


class StoreUnavailableError(ConnectionError):
    """The store could not be reached (refused, reset, cluster down): trips the breaker.

    Defined here rather than in ``mly.errors`` because it never leaves the cache
    package: the tiered cache turns it into a miss.
    """

    def __init__(self, store: str, message: str) -> None:
        super().__init__(f"{store}: {message}")
        self.store = store


class StoreWriteError(ValueError):
    """The store answered but refused some records of a ``put_many`` (the others were written).

    Not an outage: the breaker stays closed, and only ``refused`` rows count as
    write errors.
    """

    def __init__(self, store: str, refused: int, total: int, detail: str) -> None:
        super().__init__(f"{store}: {refused} of {total} records refused; {detail}")
        self.store = store
        self.refused = refused
        self.total = total


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One cache entry as an external store holds it.

    ``fields`` are JSON-compatible plain Python values (what ``Storable.to_fields``
    returns); ``dict_hash`` is the dictionary hash the row was computed under
    (0 when the model has no dictionary, or when a Go writer left the bin out).
    """

    fields: dict[str, Any] | None
    """``None`` only in a copy read from a store that keeps row JSON (``json`` is set then)."""
    dict_hash: int
    ttl_ms: int | None = field(default=None, compare=False)
    """Time the entry has left, as the store said on a read (``None``: unknown, or a new
    row). A copy to a faster tier gets this, not a fresh TTL, so an entry never outlives
    the TTL it was first written with. On a write: at most this long (never longer than
    the store's own TTL)."""
    json: bytes | None = field(default=None, compare=False)
    """The row's JSON exactly as the memory tier would hold it, when known: built by a store while
    decoding (Aerospike with the default storable), or kept whole by a store of row JSON (Redis).
    ``None``: the tiered cache builds it from ``fields`` with its storable."""


@dataclass(frozen=True, slots=True)
class RowsRead:
    """A lookup in a store that keeps row JSON (``get_rows``): what the tiered cache serves."""

    rows: list[bytes | None]
    """Row JSON per key; ``None`` for a miss, an entry of another dictionary, or a stale one."""
    remaining_ms: list[int]
    """Time each hit has left (its copies keep it)."""
    stale: int
    """Entries refused for their dictionary hash or because they predate a reload."""
    foreign: int = 0
    """Values that are not entries at all (another program's data under the same keys): misses,
    counted as errors."""


@runtime_checkable
class AsyncStore(Protocol):
    """An external tier used from the event loop (server, ``AsyncClient``)."""

    name: str
    """Short label for logs and counters, e.g. ``"redis:l1"``."""
    read_only: bool
    """``put_many`` is a no-op; the tiered cache does not even queue writes for it."""

    async def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]:
        """One round trip for all ``keys``; ``None`` where the store has nothing."""
        ...

    async def put_many(self, items: Sequence[tuple[str, StoredRow]]) -> None:
        """Store every item with the store's TTL, in as few round trips as possible."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads; the store is unusable afterwards."""
        ...


@runtime_checkable
class SyncStore(Protocol):
    """The blocking twin of ``AsyncStore`` for the synchronous client."""

    name: str
    read_only: bool

    def get_many(self, keys: Sequence[str]) -> list[StoredRow | None]: ...

    def put_many(self, items: Sequence[tuple[str, StoredRow]]) -> None: ...

    def close(self) -> None: ...
