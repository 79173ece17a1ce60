"""Single-flight: concurrent misses on one key are evaluated once (docs/differences-from-go.md #2).

A hot key that just expired would otherwise send every concurrent request for
it to TensorFlow at the same moment. The first request to miss a key *owns* it
and evaluates it; later ones (and duplicate rows of the same batch) wait for
the owner's result. Everything runs on the event loop, so no lock is needed.

Most keys are never waited for (cold traffic rarely repeats within one model
call), so an owned key holds no future until a second claimant asks for one:
the common miss then costs a dict insert and a pop, not a future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

__all__ = ["Claim", "OwnRowNeeded", "SingleFlight"]


class OwnRowNeeded(Exception):
    """Given to waiters when the owner could not evaluate: each waiter evaluates its own row.

    The owner's failure may have nothing to do with the waiter: another row of the
    owner's batch failed in TensorFlow, its deadline (not the waiter's) passed, its
    client went away, or its value was refused (rows share a key when their values
    normalise alike, and a float32 past its range keys as infinity like any other such
    value). A waiter gets its own answer or its own error, never the owner's.
    """


class Claim:
    """What one caller must evaluate and what it must wait for."""

    __slots__ = ("keys", "owned", "waiting")

    def __init__(self) -> None:
        self.owned: list[int] = []
        """Row indexes this caller must evaluate (first row of each key not in flight)."""
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        """Row index -> future of a row owned by someone else (or by an earlier row)."""
        self.keys: list[str] = []
        """Keys owned, in ``owned`` order."""


class SingleFlight:
    def __init__(self) -> None:
        # key -> None while nobody waits for it, or the future its waiters hold.
        self._inflight: dict[str, asyncio.Future[bytes] | None] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def claim(self, keys: Sequence[str], rows: Sequence[int]) -> Claim:
        """Split ``rows`` (with their ``keys``) into rows to evaluate and rows to wait for."""
        claim = Claim()
        inflight = self._inflight
        for key, row in zip(keys, rows):
            if key not in inflight:
                inflight[key] = None
                claim.owned.append(row)
                claim.keys.append(key)
                continue
            future = inflight[key]
            if future is None:
                future = inflight[key] = asyncio.get_running_loop().create_future()
            claim.waiting[row] = future
        return claim

    def resolve(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        inflight = self._inflight
        for key, value in zip(keys, values):
            future = inflight.pop(key, None)
            if future is not None and not future.done():
                future.set_result(value)

    def fail(self, keys: Sequence[str], exc: BaseException) -> None:
        """Owners that could not evaluate release their waiters with ``exc`` (``OwnRowNeeded``)."""
        for key in keys:
            future = self._inflight.pop(key, None)
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: a waiter may have given up already
