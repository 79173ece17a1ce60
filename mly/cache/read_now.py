"""A store-only cache's lookup answered by callbacks: no task, no coroutine, no ``asyncio.timeout``.

Why: when a fleet's shared Redis or Aerospike is a model's only tier, every request waits
for one store round trip. Taken through a task and the tiered cache's coroutines (the
request's task, five awaiting frames, a ``Timeout`` context, the breaker), that wait cost
the server about as much CPU as the lookup's own encoding, decoding and I/O. Here the
lookup is sent at once (``read_now`` of the store), one timer bounds it, and the reply's
callback hands the rows to the caller.

Only the common case goes this way; the caller falls back to ``TieredCache.get_many`` for
everything else, so breaker probes, retries on a fresh connection and copies between tiers
stay in one place:

- the cache has one external tier (L1, no memory tier, no L2) whose store has
  ``read_now``/``rows_of`` and whose breaker is closed;
- a connection error is not counted here: the rows are looked up again the common way
  (``RETRY``), which retries a connection that died under the command and counts what fails;
- a timeout is counted exactly as ``get_many`` counts one (a timeout, a breaker failure,
  every row a miss).

Counters (hits, misses, stale, errors, timeouts) and the breaker see the same as for
``get_many`` over the same store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from mly.cache.breaker import BreakerState

if TYPE_CHECKING:
    from mly.cache.tiered import TieredCache, _Tier

__all__ = ["RETRY", "Done", "read_now"]

log = logging.getLogger("mly.cache")

RETRY: Final = "retry"
"""Handed to ``Done`` instead of rows: look these keys up again with ``TieredCache.get_many``."""

Done = Callable[[Any, int], None]
"""Called once with the rows (row JSON or ``None`` per key; every row ``None`` after a timeout)
or ``RETRY``, and the rows L1 answered."""


class _Read:
    __slots__ = ("cache", "count", "dict_hash", "done", "future", "min_expires_ms", "started", "tier", "timeout_s",
                 "timer")

    def __init__(self, cache: TieredCache, tier: _Tier, keys: list[str], dict_hash: int, min_expires_ms: int,
                 done: Done, timeout_s: float) -> None:
        self.cache = cache
        self.tier = tier
        self.count = len(keys)
        self.dict_hash = dict_hash
        self.min_expires_ms = min_expires_ms
        self.done: Done | None = done
        self.timeout_s = timeout_s
        self.started = tier.breaker.clock()
        self.future: asyncio.Future[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def replied(self, future: asyncio.Future[Any]) -> None:
        done = self.done
        if done is None:  # timed out: the reply came too late
            if not future.cancelled():
                future.exception()  # retrieved: nobody waits for it
            return
        self.done = None
        assert self.timer is not None
        self.timer.cancel()
        cache, tier = self.cache, self.tier
        counters = cache.counters
        n = self.count
        try:
            read = tier.store.rows_of(future.result(), self.dict_hash, self.min_expires_ms)  # type: ignore[attr-defined]
        except (asyncio.TimeoutError, TimeoutError) as exc:
            counters.timeouts += 1
            cache._failed(tier, self.started, str(exc) or "timed out")
            counters.misses += n
            done([None] * n, 0)
            return
        except OSError:  # a connection that died under the command: the common path retries it
            done(RETRY, 0)
            return
        except asyncio.CancelledError:  # the store closed
            done(RETRY, 0)
            return
        except Exception as exc:
            tier.breaker.record_success()
            counters.errors += 1
            counters.misses += n
            log.warning("%s %s: %s: %s", tier.label, tier.store.name, type(exc).__name__, exc)
            done([None] * n, 0)
            return
        tier.breaker.record_success()
        rows = read.rows
        if len(rows) != n:
            counters.errors += 1
            counters.misses += n
            log.warning("%s returned %d rows for %d keys", tier.store.name, len(rows), n)
            done([None] * n, 0)
            return
        counters.stale += read.stale
        counters.errors += read.foreign
        missed = rows.count(None)
        counters.hits_l1 += n - missed
        counters.misses += missed
        done(rows, n - missed)

    def timed_out(self) -> None:
        done = self.done
        if done is None:
            return
        self.done = None
        assert self.future is not None
        self.future.cancel()
        counters = self.cache.counters
        counters.timeouts += 1
        self.cache._failed(self.tier, self.started, f"no answer within {self.timeout_s * 1000:.0f} ms")
        counters.misses += self.count
        done([None] * self.count, 0)


def read_now(cache: TieredCache, keys: list[str], dict_hash: int, done: Done) -> bool:
    """Start looking ``keys`` up; ``done`` is called later (never before this returns).
    ``False`` (nothing sent, nothing counted) when this cache or its store's state is not
    the common case: use ``get_many``."""
    tier = cache.l1
    if tier is None or cache.memory is not None or cache.l2 is not None or not keys:
        return False
    if tier.breaker.state is not BreakerState.CLOSED:
        return False
    store = tier.store
    start = getattr(store, "read_now", None)
    if start is None:
        return False
    min_expires_ms = cache.min_expires_ms()
    future = start(keys, dict_hash, min_expires_ms)
    if future is None:
        return False
    timeout_s = cache.timeout_s + getattr(store, "deadline_slack_s", 0.0)
    read = _Read(cache, tier, keys, dict_hash, min_expires_ms, done, timeout_s)
    read.future = future
    read.timer = asyncio.get_running_loop().call_later(timeout_s, read.timed_out)
    future.add_done_callback(read.replied)
    return True
