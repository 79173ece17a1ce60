"""Backoff and circuit breaker for each external store.

A cache is only worth asking if it answers faster than the model: when Redis or
Aerospike is down, every request would otherwise pay a connect timeout before
computing anyway. The breaker turns "store down" into an instant miss, and lets
a single probe call through after a short interval to find out when it is back.

Both objects are pure state machines (no I/O, no asyncio) so the sync and async
clients share them and tests drive them with a fake clock. Like Go's Aerospike
wrapper the breaker opens on the first connection error or timeout.

Recovery must be prompt: a store that answers again should serve lookups within
a second or two, not after a backoff that grew while it was down. So:

- the probe interval starts at 0.5 s and is capped at 1 s (one lookup per second
  against a dead store is cheap; a long backoff is lost hits);
- failures that happen together count once: a call that started before the
  breaker last opened failed for the reason that opened it, so its failure
  neither grows the backoff nor pushes the next probe back. Under load, dozens of
  lookups are in flight when a store dies; each used to count as a new failure.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable

__all__ = [
    "DEFAULT_BACKOFF_BASE_S",
    "DEFAULT_BACKOFF_CAP_S",
    "DEFAULT_JITTER",
    "DEFAULT_PROBE_TIMEOUT_S",
    "BreakerState",
    "CircuitBreaker",
    "ExponentialBackoff",
]

DEFAULT_BACKOFF_BASE_S = 0.5
DEFAULT_BACKOFF_CAP_S = 1.0
DEFAULT_JITTER = 0.2
DEFAULT_PROBE_TIMEOUT_S = 10.0

Clock = Callable[[], float]


class ExponentialBackoff:
    """``base_s * 2**(failures-1)`` capped at ``cap_s``, less up to ``jitter`` of it.

    Jitter only shortens the delay (uniform in ``[d*(1-jitter), d]``), so the cap
    holds; it spreads the probes of many processes that lost the store at the
    same moment. ``jitter=0`` makes it deterministic.
    """

    def __init__(
        self,
        base_s: float = DEFAULT_BACKOFF_BASE_S,
        cap_s: float = DEFAULT_BACKOFF_CAP_S,
        jitter: float = DEFAULT_JITTER,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"backoff needs 0 < base_s <= cap_s, got base_s={base_s}, cap_s={cap_s}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self._rng = rng or random.Random()

    def compute(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (0 for none)."""
        if failures <= 0:
            return 0.0
        # min() on the exponent first: 2**failures overflows a float after ~1000 failures.
        delay = min(self.cap_s, self.base_s * 2.0 ** min(failures - 1, 64))
        if self.jitter:
            delay *= 1.0 - self.jitter * self._rng.random()
        return delay

    def reset(self) -> None:
        """Nothing to forget: the delay depends only on ``failures`` (redis-py API)."""


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """closed -> (failure) -> open -> (backoff passed) -> half-open -> closed or open.

    Callers ask ``allow()`` before each store call and report the outcome with
    ``record_success()`` / ``record_failure(started)``, where ``started`` is the
    breaker's ``clock()`` when the call began. While open, ``allow()`` is False
    and no I/O happens. The first ``allow()`` after the backoff returns True once
    (that caller is the probe) and the state is half-open; other callers are
    refused until the probe reports. A probe that never reports (its task was
    cancelled) is forgotten after ``probe_timeout_s`` so the breaker cannot stick.

    A failure of a call that started before the breaker last opened is ignored
    (see the module docstring): only the first failure of a cohort and failed
    probes count.
    """

    def __init__(
        self,
        backoff: ExponentialBackoff | None = None,
        *,
        failure_threshold: int = 1,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        clock: Clock = time.monotonic,
        name: str = "",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.backoff = backoff or ExponentialBackoff()
        self.failure_threshold = failure_threshold
        self.probe_timeout_s = probe_timeout_s
        self.name = name
        self.clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._retry_at = 0.0
        self._probe_started = 0.0
        self._opened_at = float("-inf")
        self.opened = 0
        """How many times the breaker went from closed or half-open to open."""

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    @property
    def retry_at(self) -> float:
        """Clock time when an open breaker lets the next probe through."""
        return self._retry_at

    def allow(self) -> bool:
        """May a call go to the store now? True at most once per backoff while not closed."""
        if self._state is BreakerState.CLOSED:
            return True
        now = self.clock()
        if self._state is BreakerState.OPEN:
            if now < self._retry_at:
                return False
        elif now - self._probe_started < self.probe_timeout_s:
            return False
        self._state = BreakerState.HALF_OPEN
        self._probe_started = now
        return True

    def record_success(self) -> None:
        """The store answered: close the breaker and forget past failures."""
        self._state = BreakerState.CLOSED
        self._failures = 0
        self.backoff.reset()

    @property
    def opened_at(self) -> float:
        """Clock time the breaker last went to open (-inf if never)."""
        return self._opened_at

    def record_failure(self, started: float | None = None) -> bool:
        """A connection error or timeout: open for the backoff once over the threshold.

        ``started`` is when the failed call began; a call that began before the
        breaker last opened is part of the failure already counted, so it changes
        nothing. Returns whether this failure counted.
        """
        if started is not None and started < self._opened_at:
            return False
        self._failures += 1
        if self._state is BreakerState.CLOSED and self._failures < self.failure_threshold:
            return True
        now = self.clock()
        self._state = BreakerState.OPEN
        self._opened_at = now
        self.opened += 1
        self._retry_at = now + self.backoff.compute(self._failures - self.failure_threshold + 1)
        return True

    def release_probe(self) -> None:
        """The probe was cancelled before it learned anything: let the next call probe."""
        if self._state is BreakerState.HALF_OPEN:
            self._state = BreakerState.OPEN
            self._retry_at = self.clock()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, {self._state.value}, failures={self._failures})"
