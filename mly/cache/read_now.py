"""A store-only cache's lookup answered by callbacks: no task, no coroutine, no ``asyncio.timeout``.

Why: when a fleet's shared Redis or Aerospike is a model's only tier, every request waits
for one store round trip. Taken through a task and the tiered cache's coroutines (the
request's task, five awaiting frames, a ``Timeout`` context, the breaker), that wait cost
the server about as much CPU as the lookup's own encoding, decoding and I/O. Here the
lookup is sent at once (``read_now`` of the store), one timer bounds it, and the reply's
callback hands the rows to the caller.

Only the common case goes this way; the caller falls back to ``TieredCache.get_many`` for
everything else, so breaker probes and copies between tiers stay in one place (a lookup
whose connection died is sent again through the store's own ``get_rows``):

- the cache has one external tier (L1, no memory tier, no L2) whose store has
  ``read_now``/``rows_of`` and whose breaker is closed;
- a lookup whose connection died under it (or that its store refused) is read once more with
  the store's ``get_rows``, which opens a fresh connection, as ``get_many``'s call retries it:
  within the same deadline (the timer still runs), and what fails then is counted as there;
- a store or cache closed under the lookup hands it back (``RETRY``) to be looked up the common
  way, with nothing counted (a reload replaced the cache; the store is not at fault);
- a timeout is counted exactly as ``get_many`` counts one (a timeout, a breaker failure,
  every row a miss).

Counters (hits, misses, stale, errors, timeouts) and the breaker see the same as for
``get_many`` over the same store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from mly.cache.breaker import BreakerState

if TYPE_CHECKING:
    from mly.cache.tiered import TieredCache, _Tier

__all__ = ["RETRY", "Done", "read_now"]

RETRY: Final = "retry"
"""Handed to ``Done`` instead of rows: look these keys up again with ``TieredCache.get_many``."""

Done = Callable[[Any, int], None]
"""Called once with the rows (row JSON or ``None`` per key; every row ``None`` after a timeout)
or ``RETRY``, and the rows L1 answered."""


class _Read:
    __slots__ = ("cache", "dict_hash", "done", "future", "keys", "min_expires_ms", "retried", "started", "tier",
                 "timeout_s", "timer")

    def __init__(self, cache: TieredCache, tier: _Tier, keys: list[str], dict_hash: int, min_expires_ms: int,
                 done: Done, timeout_s: float) -> None:
        self.cache = cache
        self.tier = tier
        self.keys = keys
        self.dict_hash = dict_hash
        self.min_expires_ms = min_expires_ms
        self.done: Done | None = done
        self.timeout_s = timeout_s
        self.started = tier.breaker.clock()
        self.future: asyncio.Future[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.retried = False
        """``future`` is ``get_rows``'s, sent again after the first connection died under it."""

    def replied(self, future: asyncio.Future[Any]) -> None:
        done = self.done
        if done is None:  # timed out: the reply came too late
            if not future.cancelled():
                future.exception()  # retrieved: nobody waits for it
            return
        cache, tier = self.cache, self.tier
        try:
            result = future.result()
            read = result if self.retried else tier.store.rows_of(  # type: ignore[attr-defined]
                result, self.dict_hash, self.min_expires_ms)
        except asyncio.CancelledError:  # the store closed
            self.handed_back(done)
            return
        except Exception as exc:
            if cache._closed:  # closed under the lookup (a reload replaced it): nothing is wrong with the store
                self.handed_back(done)
                return
            # StoreUnavailableError: a connection that died under the command, a refusal. Once more
            # on a fresh connection, as ``get_many``'s call does, within this deadline.
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError) and not self.retried:
                self.retried = True
                self.future = asyncio.ensure_future(
                    tier.store.get_rows(self.keys, self.dict_hash, self.min_expires_ms))  # type: ignore[attr-defined]
                self.future.add_done_callback(self.replied)
                return
            self.settled()
            cache._call_failed(tier, self.started, exc, self.timeout_s)
            self.all_missed(done)
            return
        self.settled()
        tier.breaker.record_success()
        n = len(self.keys)
        out: list[bytes | None] = [None] * n
        found = cache._take_rows(tier, self.keys, list(range(n)), self.dict_hash, read, out)
        if found is None:  # a reply of the wrong length: counted there
            self.all_missed(done)
            return
        cache.counters.misses += n - len(found)
        done(out, len(found))

    def settled(self) -> None:
        """The lookup is answered: no timeout any more."""
        self.done = None
        assert self.timer is not None
        self.timer.cancel()

    def handed_back(self, done: Done) -> None:
        """Answered with ``RETRY``, nothing counted: its store or cache closed under it."""
        self.settled()
        done(RETRY, 0)

    def all_missed(self, done: Done) -> None:
        """Every key a miss (the lookup failed), counted as ``get_many`` counts it."""
        n = len(self.keys)
        self.cache.counters.misses += n
        done([None] * n, 0)

    def timed_out(self) -> None:
        done = self.done
        if done is None:
            return
        self.done = None
        assert self.future is not None
        self.future.cancel()
        if self.cache._closed:  # as in ``replied``: handed back, not counted
            self.handed_back(done)
            return
        self.cache._call_failed(self.tier, self.started, TimeoutError(), self.timeout_s)
        self.all_missed(done)


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
