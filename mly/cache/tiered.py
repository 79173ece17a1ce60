"""memory -> L1 -> L2 lookups with upward copies, and write-behind to the external tiers.

Reads (``get_many``) walk the tiers in order, each asked only for what the
previous one missed, in one batched call. An external hit is turned into the
same JSON bytes the memory tier holds and copied upward: into memory at once, and
from L2 into L1 through the write queue. A copy keeps the time its entry has left
(``StoredRow.ttl_ms``), so no tier serves an entry past the TTL it was written with. A hit computed under another dictionary
(``dictHash`` differs, strict equality) is a miss and counted
``stale``, so a new vocabulary never serves old predictions.

A cache lookup must never cost more than computing the answer, nor fail a
request. So every external call goes through the store's circuit breaker and is
bounded by ``timeout_s``; an error, a timeout or an open breaker is a miss plus a
counter, never an exception. The worst case for one lookup is ``timeout_s`` per
external tier, and only until the breaker opens.

Writes (``put_many``) are synchronous and never wait: the memory tier is written
at once, the external writes go into a bounded queue that a background task
drains in batches; a full queue drops rows (``write_dropped``). L1 and L2 are
written independently: Go skips L2 when the L1 write fails, mly still writes it,
since an L2 is usually the shared store that outlives a lost L1. L2 writes use
the L1 TTL as in Go (the stores are built that way, see ``factory``).

Negative entries: when ``retry_time_ms > 0`` and the memory tier exists, a key
that every external tier answered "absent" is remembered as absent in memory
for ``retry_time_ms`` (Go's NotFound marker, ``RetryTimeMs``), so repeated
misses skip the network. It only skips the lookup: the caller still computes the
row and ``put_many`` replaces the marker.

Use from one event loop; ``put_many`` may also be called from other threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from mly.cache.base import AsyncStore, RowsRead, StoredRow, StoreWriteError, effective_ttl_ms
from mly.cache.breaker import CircuitBreaker
from mly.cache.read_now import Done, read_now
from mly.cache.stats import CacheCounters
from mly.cache.storable import DEFAULT_STORABLE, Storable

if TYPE_CHECKING:
    from mly._native.mru import MRUCache

__all__ = ["TieredCache"]

log = logging.getLogger("mly.cache")

_T = TypeVar("_T")
_FAILED: Any = object()
_SKIPPED: Any = object()
_HIT: Any = object()  # a hit whose StoredRow nobody needs (no copy to L1)
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
DEFAULT_WRITE_BATCH = 256
DEFAULT_CLOSE_TIMEOUT_S = 5.0
WRITE_TIME_SLACK_S = 1.0


@dataclass(slots=True)
class _Tier:
    label: str
    store: AsyncStore
    breaker: CircuitBreaker


@dataclass(slots=True)
class _Write:
    """One queued external write. ``payload`` is a row, or a ``StoredRow`` being copied up."""

    key: str
    payload: Any
    dict_hash: int
    to_l1: bool
    to_l2: bool
    json: bytes | None = None
    """The row's JSON as served, for stores that keep it (``keeps_row_json``)."""


def _partial_put(store: AsyncStore) -> Callable[[Sequence[tuple[str, StoredRow]]], Awaitable[Any]]:
    """``store.put_many`` that returns (rather than raises) a ``StoreWriteError``: a partial success."""

    async def put(items: Sequence[tuple[str, StoredRow]]) -> Any:
        try:
            await store.put_many(items)
        except StoreWriteError as exc:
            return exc
        return None

    return put


class TieredCache:
    """The cache of one datastore: optional memory tier, optional L1 and L2 stores."""

    def __init__(
        self,
        memory: MRUCache | None,
        l1: AsyncStore | None,
        l2: AsyncStore | None,
        *,
        storable: Storable = DEFAULT_STORABLE,
        ttl_ms: int,
        timeout_s: float,
        write_queue_size: int = 10_000,
        counters: CacheCounters | None = None,
        retry_time_ms: int = 0,
        write_timeout_s: float | None = None,
        write_batch_size: int = DEFAULT_WRITE_BATCH,
        breaker_factory: Callable[[str], CircuitBreaker] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if write_queue_size < 1 or write_batch_size < 1:
            raise ValueError("write_queue_size and write_batch_size must be >= 1")
        make_breaker = breaker_factory or (lambda name: CircuitBreaker(name=name))
        self.memory = memory
        self.l1 = _Tier("l1", l1, make_breaker(l1.name)) if l1 is not None else None
        self.l2 = _Tier("l2", l2, make_breaker(l2.name)) if l2 is not None else None
        self.storable = storable
        self.ttl_ms = effective_ttl_ms(ttl_ms)
        self.retry_time_ms = retry_time_ms
        self.timeout_s = timeout_s
        self.write_timeout_s = write_timeout_s or max(1.0, 4 * timeout_s)
        self.write_queue_size = write_queue_size
        self.write_batch_size = write_batch_size
        self.counters = counters if counters is not None else CacheCounters()
        self._write_l1 = self.l1 is not None and not getattr(l1, "read_only", False)
        self._write_l2 = self.l2 is not None and not getattr(l2, "read_only", False)
        self._queue: deque[_Write] = deque()
        self.counters.bind_queue(self._queue)
        self._wakeup: asyncio.Event | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._in_flight = 0
        self._closed = False
        self._valid_from = 0.0
        """Wall-clock time before which external entries are not served (``forget_older_entries``)."""

    def forget_older_entries(self) -> None:
        """Serve no entry written before now: the model changed but its dictionary hash did not.

        The memory tier is cleared. External entries cannot be deleted (other servers,
        other keys), but each says how long it has left, so its write time is known
        (``ttl_ms`` minus what is left); one written before now, or within
        ``WRITE_TIME_SLACK_S`` after it (Aerospike counts whole seconds), is a miss.
        """
        if self.memory is not None:
            self.memory.clear()
        self._valid_from = time.time() + WRITE_TIME_SLACK_S

    # ------------------------------------------------------------------ reads

    def memory_hits(self, keys: list[str], dict_hash: int, batch: bool) -> bytes | list[Any]:
        """When every key is in the memory tier: their values joined as the answer's ``data``
        (``MRUCache.get_joined``), counted as hits. Otherwise the memory tier's values (bytes,
        ``None``, ``KNOWN_MISSING``), not counted: they are for ``get_many(..., memory_values=...)``
        to count and complete, so a key found in memory is not looked up (and counted) twice.
        Only for a cache with a memory tier."""
        assert self.memory is not None
        found = self.memory.get_joined(keys, dict_hash, batch)
        if type(found) is bytes:
            self.counters.hits_memory += len(keys)
        return found

    async def get_many(self, keys: list[str], dict_hash: int, memory_values: list[Any] | None = None,
                       tally: list[int] | None = None) -> list[bytes | None]:
        """Row JSON for each key, ``None`` for a miss. Never raises for a store problem.
        ``memory_values``: what ``memory_hits`` read for these keys and did not count; the keys
        it did not find there are looked up in memory again. ``tally``: this call's hits per
        tier are added to its items 0 (memory), 1 (L1) and 2 (L2), for the access log."""
        out: list[bytes | None] = [None] * len(keys)
        counters = self.counters
        if self.memory is not None:
            pending: list[int] = []
            hits = negatives = 0
            if memory_values is None:
                memory_values = self.memory.get_many(keys, dict_hash)
            else:
                # Read on an earlier turn of the loop, maybe: a row another request stored since
                # must be found, not evaluated again, so the keys that missed are read again.
                again = [i for i, value in enumerate(memory_values) if type(value) is not bytes]
                if again:
                    memory_values = list(memory_values)
                    for i, value in zip(again, self.memory.get_many([keys[i] for i in again], dict_hash)):
                        memory_values[i] = value
            for i, value in enumerate(memory_values):
                if type(value) is bytes:
                    out[i] = value
                    hits += 1
                elif value is None:
                    pending.append(i)
                else:  # KNOWN_MISSING: every store said absent a moment ago
                    negatives += 1
            counters.hits_memory += hits
            counters.negative_hits += negatives
            counters.misses += negatives
            if tally is not None:
                tally[0] += hits
        else:
            pending = list(range(len(keys)))
        if not pending:
            return out
        external = [tier for tier in (self.l1, self.l2) if tier is not None]
        answered = True
        for tier in external:
            found = await self._read_tier(tier, keys, pending, dict_hash, out)
            if found is None:
                answered = False
                continue
            if found:
                if tally is not None:
                    tally[1 if tier is self.l1 else 2] += len(found)
                if tier is self.l2 and self._write_l1:
                    for i, stored in found:
                        if stored.ttl_ms is None or stored.ttl_ms > 0:
                            self._enqueue(_Write(keys[i], stored, dict_hash, True, False))
                pending = [i for i in pending if out[i] is None]
                if not pending:
                    break
        if pending and external and self.memory is not None:
            missing = len(pending)
            pending = self._recheck_memory(keys, pending, dict_hash, out)
            if tally is not None:
                tally[0] += missing - len(pending)
        counters.misses += len(pending)
        if pending and answered and external and self.retry_time_ms > 0 and self.memory is not None:
            for i in pending:
                self.memory.put_missing(keys[i], dict_hash, self.retry_time_ms)
        return out

    def read_now(self, keys: list[str], dict_hash: int, done: Done) -> bool:
        """``get_many`` for a cache whose only tier is one store, answered through ``done``
        without a coroutine (``read_now``); ``False`` when it does not apply: use ``get_many``."""
        return read_now(self, keys, dict_hash, done)

    def min_expires_ms(self) -> int:
        """The expiry time before which an external entry predates ``forget_older_entries``: 0 if none."""
        return int(self._valid_from * 1000) + self.ttl_ms if self._valid_from else 0

    def _recheck_memory(self, keys: list[str], pending: list[int], dict_hash: int, out: list[bytes | None]) -> list[int]:
        """Look in memory again for keys the external tiers missed; return those still missing.

        While this lookup waited on the network, another request may have computed
        one of these rows and put it in memory (its single-flight has ended, so
        this request could not join it). Without this second look it would be
        computed again.
        """
        still: list[int] = []
        hits = 0
        for i, value in zip(pending, self.memory.get_many([keys[i] for i in pending], dict_hash)):  # type: ignore[union-attr]
            if type(value) is bytes:
                out[i] = value
                hits += 1
            else:
                still.append(i)
        self.counters.hits_memory += hits
        return still

    async def _read_tier(
        self, tier: _Tier, keys: list[str], pending: list[int], dict_hash: int, out: list[bytes | None]
    ) -> list[tuple[int, StoredRow]] | None:
        """Ask one store for the pending keys; fill ``out``; return the hits, ``None`` on failure."""
        # A store that bounds its own queue wait and wire time (Aerospike) says how much longer the
        # deadline may be: time waiting for a thread is not time on the wire.
        timeout_s = self.timeout_s + getattr(tier.store, "deadline_slack_s", 0.0)
        asked = [keys[i] for i in pending]
        get_rows = getattr(tier.store, "get_rows", None)
        if get_rows is not None:
            # A store that keeps row JSON checks hash and age itself and hands back what is served.
            min_expires_ms = self.min_expires_ms()
            read = await self._call(tier, lambda ks: get_rows(ks, dict_hash, min_expires_ms), asked,
                                    timeout_s=timeout_s)
            if read is _FAILED or read is _SKIPPED:
                return None
            return self._take_rows(tier, keys, pending, dict_hash, read, out)
        rows = await self._call(tier, tier.store.get_many, asked, timeout_s=timeout_s)
        if rows is _FAILED or rows is _SKIPPED:
            return None
        if len(rows) != len(pending):
            self.counters.errors += 1
            log.warning("%s returned %d rows for %d keys", tier.store.name, len(rows), len(pending))
            return None
        found: list[tuple[int, StoredRow]] = []
        counters = self.counters
        valid_from = self._valid_from
        now = time.time() if valid_from else 0.0
        copy_up = tier is self.l2 and self._write_l1
        for i, stored in zip(pending, rows, strict=True):
            if stored is None:
                continue
            if stored.dict_hash != dict_hash or (valid_from and (
                    stored.ttl_ms is None or now - (self.ttl_ms - stored.ttl_ms) / 1000 < valid_from)):
                counters.stale += 1
                continue
            data = stored.json
            if data is None:
                try:
                    data = orjson.dumps(self.storable.from_fields(stored.fields), option=_JSON_OPTIONS)
                except Exception as exc:
                    counters.errors += 1
                    log.warning("%s: cannot decode entry %r: %s", tier.store.name, keys[i], exc)
                    continue
            out[i] = data
            found.append((i, StoredRow(stored.fields, stored.dict_hash, stored.ttl_ms, data) if copy_up else stored))
            if self.memory is not None:
                ttl_ms = self.ttl_ms if stored.ttl_ms is None else min(self.ttl_ms, stored.ttl_ms)
                if ttl_ms > 0:  # else it expires now: answered, not copied
                    self.memory.put(keys[i], data, dict_hash, ttl_ms)
        if tier is self.l1:
            counters.hits_l1 += len(found)
        else:
            counters.hits_l2 += len(found)
        return found

    def _take_rows(self, tier: _Tier, keys: list[str], pending: list[int], dict_hash: int, read: RowsRead,
                   out: list[bytes | None]) -> list[tuple[int, StoredRow]] | None:
        """``_read_tier`` for a store that answered with row JSON (``get_rows``)."""
        rows = read.rows
        if len(rows) != len(pending):
            self.counters.errors += 1
            log.warning("%s returned %d rows for %d keys", tier.store.name, len(rows), len(pending))
            return None
        self.counters.stale += read.stale
        self.counters.errors += read.foreign
        memory = self.memory
        copy_up = tier is self.l2 and self._write_l1
        if memory is None and not copy_up and len(pending) == len(out):  # a store-only lookup: no copies
            out[:] = rows
            hits = len(rows) - rows.count(None)
            if tier is self.l1:
                self.counters.hits_l1 += hits
            else:
                self.counters.hits_l2 += hits
            return [(0, _HIT)] * hits
        found: list[tuple[int, StoredRow]] = []
        ttl_ms = self.ttl_ms
        for i, data, remaining in zip(pending, rows, read.remaining_ms):
            if data is None:
                continue
            out[i] = data
            found.append((i, StoredRow(None, dict_hash, remaining, data) if copy_up else _HIT))
            if memory is not None:
                memory.put(keys[i], data, dict_hash, min(ttl_ms, remaining))
        if tier is self.l1:
            self.counters.hits_l1 += len(found)
        else:
            self.counters.hits_l2 += len(found)
        return found

    async def _call(self, tier: _Tier, fn: Callable[[_T], Awaitable[Any]], arg: _T, *, timeout_s: float) -> Any:
        """One store call through its breaker and a deadline.

        Returns ``_SKIPPED`` (breaker open, no I/O) or ``_FAILED`` instead of raising.
        """
        breaker = tier.breaker
        counters = self.counters
        if not breaker.allow():
            counters.breaker_open_skips += 1
            return _SKIPPED
        started = breaker.clock()
        try:
            async with asyncio.timeout(timeout_s):  # no extra task per call, unlike wait_for
                result = await fn(arg)
        except asyncio.CancelledError:
            breaker.release_probe()
            raise
        except Exception as exc:
            self._call_failed(tier, started, exc, timeout_s)
            return _FAILED
        breaker.record_success()
        return result

    def _call_failed(self, tier: _Tier, started: float, exc: Exception, timeout_s: float) -> None:
        """Count a store call that raised ``exc``: a timeout or an outage (``StoreUnavailableError``
        is a ``ConnectionError``) is a failure for the breaker; anything else is an error of a store
        that did answer. Also ``read_now``'s, so both paths count alike."""
        if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is TimeoutError
            self.counters.timeouts += 1
            self._failed(tier, started, str(exc) or f"no answer within {timeout_s * 1000:.0f} ms")
        elif isinstance(exc, OSError):
            self.counters.errors += 1
            self._failed(tier, started, str(exc))
        else:
            tier.breaker.record_success()
            self.counters.errors += 1
            log.warning("%s %s: %s: %s", tier.label, tier.store.name, type(exc).__name__, exc)

    def _failed(self, tier: _Tier, started: float, reason: str) -> None:
        """Report a failed call; calls already in flight when the breaker opened count once."""
        breaker = tier.breaker
        if not breaker.record_failure(started):
            return
        delay = max(0.0, breaker.retry_at - breaker.clock())
        log.warning("%s %s unavailable (%s); skipped for %.1f s", tier.label, tier.store.name, reason, delay)

    # ----------------------------------------------------------------- writes

    def put_many(self, items: Sequence[tuple[str, Any, bytes]], dict_hash: int) -> None:
        """Cache freshly computed rows: ``(key, row, row_json)``. Never blocks, never raises.

        ``row_json`` goes into memory now; ``row`` is converted by the storable and
        written to the external tiers later, so do not mutate it afterwards.
        """
        if self.memory is not None:
            put = self.memory.put
            for key, _row, row_json in items:
                put(key, row_json, dict_hash, self.ttl_ms)
        if not (self._write_l1 or self._write_l2):
            return
        for key, row, row_json in items:
            self._enqueue(_Write(key, row, dict_hash, self._write_l1, self._write_l2, row_json), wake=False)
        self._wake()

    def _enqueue(self, write: _Write, *, wake: bool = True) -> None:
        if self._closed or len(self._queue) >= self.write_queue_size:
            self.counters.write_dropped += 1
            return
        self._queue.append(write)
        if wake:
            self._wake()

    def _wake(self) -> None:
        if self._drainer is None and not self._closed:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop in this thread: start() will drain what is queued
            self.start()
        if self._wakeup is None or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wakeup.set()
            return
        # RuntimeError: the loop is closed (aclose() was skipped), nothing will drain.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def start(self) -> None:
        """Start the write-behind task on the running loop (``put_many`` does it on first use)."""
        if self._drainer is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._drainer = self._loop.create_task(self._drain_forever(), name="mly-cache-write-behind")
        if self._queue:
            self._wakeup.set()

    async def _drain_forever(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._drain_queue()
            except Exception:  # pragma: no cover - a bug; keep draining rather than die silently
                log.exception("cache write-behind failed")

    async def _drain_queue(self) -> None:
        while self._queue:
            n = min(len(self._queue), self.write_batch_size)
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight = n
            try:
                await self._write_batch(batch)
            finally:
                self._in_flight = 0

    async def _write_batch(self, batch: list[_Write]) -> None:
        counters = self.counters
        l1_items: list[tuple[str, StoredRow]] = []
        l2_items: list[tuple[str, StoredRow]] = []
        l1_json = self.l1 is not None and getattr(self.l1.store, "keeps_row_json", False)
        l2_json = self.l2 is not None and getattr(self.l2.store, "keeps_row_json", False)
        for write in batch:
            stored = write.payload
            try:
                if not isinstance(stored, StoredRow):
                    fields = None
                    if not ((not write.to_l1 or l1_json) and (not write.to_l2 or l2_json)):
                        fields = self.storable.to_fields(write.payload)
                    stored = StoredRow(fields, write.dict_hash, json=write.json)
                elif stored.fields is None and not l1_json:  # a row-JSON copy going to a fields store
                    assert stored.json is not None
                    stored = StoredRow(self.storable.to_fields(orjson.loads(stored.json)), stored.dict_hash,
                                       stored.ttl_ms, stored.json)
            except Exception as exc:
                counters.write_errors += write.to_l1 + write.to_l2
                log.warning("cannot store row %r: %s", write.key, exc)
                continue
            if write.to_l1:
                l1_items.append((write.key, stored))
            if write.to_l2:
                l2_items.append((write.key, stored))
        for tier, items in ((self.l1, l1_items), (self.l2, l2_items)):
            if tier is None or not items:
                continue
            result = await self._call(tier, _partial_put(tier.store), items, timeout_s=self.write_timeout_s)
            if result is _SKIPPED:
                counters.write_dropped += len(items)
            elif result is _FAILED:
                counters.write_errors += len(items)
            elif isinstance(result, StoreWriteError):
                counters.write_errors += result.refused
                counters.writes += len(items) - result.refused
                log.warning("%s %s: %s", tier.label, tier.store.name, result)
            else:
                counters.writes += len(items)

    # -------------------------------------------------------------- lifecycle

    async def flush(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> bool:
        """Wait until every queued write has been attempted; False if ``timeout_s`` passed first."""
        if self._queue and self._drainer is None and not self._closed:
            self.start()
        deadline = time.monotonic() + timeout_s
        while self._queue or self._in_flight:
            if time.monotonic() >= deadline:
                return False
            if self._wakeup is not None:
                self._wakeup.set()
            await asyncio.sleep(0.005)
        return True

    async def aclose(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Drain the write queue (up to ``timeout_s``), stop the task, close the stores."""
        if self._closed:
            return
        if self._queue and self._drainer is None:
            self.start()
        await self.flush(timeout_s)
        self._closed = True
        unfinished = len(self._queue) + self._in_flight
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            self._drainer = None
        self.counters.write_dropped += unfinished
        self._queue.clear()
        for tier in (self.l1, self.l2):
            if tier is not None:
                try:
                    await tier.store.aclose()
                except Exception as exc:
                    log.warning("closing %s: %s", tier.store.name, exc)

    def stats(self) -> dict[str, Any]:
        """Counters, breaker states and the memory tier's own stats, for metrics endpoints."""
        out = self.counters.as_dict()
        for tier in (self.l1, self.l2):
            if tier is not None:
                out[f"{tier.label}_breaker"] = tier.breaker.state.value
        if self.memory is not None:
            out["memory"] = self.memory.stats()
        return out
