"""Single-flight: concurrent misses on one key are evaluated once (docs/differences-from-go.md #2).

A hot key that just expired would otherwise send every concurrent request for
it to TensorFlow at the same moment. The first request to miss a key *owns* it
and evaluates it; later ones (and duplicate rows of the same batch) wait for
the owner's result. Everything runs on the event loop, so no lock is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Claim", "SingleFlight"]


@dataclass(slots=True)
class Claim:
    owned: list[int] = field(default_factory=list)
    """Row indexes this caller must evaluate (first row of each key not in flight)."""
    waiting: dict[int, asyncio.Future[bytes]] = field(default_factory=dict)
    """Row index -> future of a row owned by someone else (or by an earlier row)."""
    keys: list[str] = field(default_factory=list)
    """Keys owned, in ``owned`` order."""


class SingleFlight:
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[bytes]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def claim(self, keys: Sequence[str], rows: Sequence[int]) -> Claim:
        """Split ``rows`` (with their ``keys``) into rows to evaluate and rows to wait for."""
        claim = Claim()
        loop = asyncio.get_running_loop()
        for key, row in zip(keys, rows):
            future = self._inflight.get(key)
            if future is None:
                future = loop.create_future()
                self._inflight[key] = future
                claim.owned.append(row)
                claim.keys.append(key)
            else:
                claim.waiting[row] = future
        return claim

    def resolve(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        for key, value in zip(keys, values):
            future = self._inflight.pop(key, None)
            if future is not None and not future.done():
                future.set_result(value)

    def fail(self, keys: Sequence[str], exc: BaseException) -> None:
        """Owners that could not evaluate pass their error on: the waiters asked for the same rows."""
        for key in keys:
            future = self._inflight.pop(key, None)
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: a waiter may have given up already
