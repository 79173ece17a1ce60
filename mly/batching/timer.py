"""A loop timer that keeps sub-millisecond waits.

An idle asyncio loop sleeps in its selector, and epoll (like libuv under uvloop)
counts in whole milliseconds: ``loop.call_at(now + 300e-6, ...)`` fires after
about 1 ms. For a batch wait of a few hundred µs that triples the wait. So the
deadline is armed twice: on the loop (on time whenever the loop is busy, since
every iteration checks its timers) and on a helper thread sleeping on a
condition (on time to some tens of µs when the loop is idle), which hands the
callback to the loop. Whichever comes first runs it; the other finds it stale.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

__all__ = ["PreciseTimer"]

IDLE_EXIT_S = 5.0
"""The helper thread ends after this long without a deadline (a new one restarts it)."""


class PreciseTimer:
    """One re-armable deadline on ``loop.time()`` (monotonic) running ``callback`` on the loop.

    ``arm``, ``cancel`` and the callback belong to the loop thread; the helper
    thread only sees ``(due, token)`` under a lock and posts ``_fire(token)``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None], *, name: str) -> None:
        self._loop = loop
        self._callback = callback
        self._name = name
        self._token = 0  # bumped on every arm/cancel, so a stale firing is ignored
        self.when: float | None = None
        """The armed deadline, or None."""
        self._handle: asyncio.TimerHandle | None = None
        self._cond = threading.Condition()
        self._thread_due: float | None = None
        self._thread_token = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        # The thread sleeps on time.monotonic(): only of use when the loop keeps that clock.
        self._threaded = abs(loop.time() - time.monotonic()) < 0.01

    def arm(self, due: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._token += 1
        self.when = due
        self._handle = self._loop.call_at(due, self._fire, self._token)
        if not self._threaded or self._closed:
            return
        with self._cond:
            self._thread_due, self._thread_token = due, self._token
            if self._thread is None:
                self._thread = threading.Thread(target=self._sleep, name=f"mly-batch-timer-{self._name}", daemon=True)
                self._thread.start()
            else:
                self._cond.notify()

    def cancel(self) -> None:
        if self.when is None:
            return
        self._token += 1
        self.when = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # The thread is not woken: if it fires, the token is stale.

    def close(self) -> None:
        """Cancel and let the helper thread end."""
        self.cancel()
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _fire(self, token: int) -> None:
        if token != self._token or self.when is None:
            return
        self.cancel()
        self._callback()

    def _sleep(self) -> None:
        with self._cond:
            while not self._closed:
                due = self._thread_due
                if due is None:
                    if not self._cond.wait(IDLE_EXIT_S) and self._thread_due is None:
                        break  # idle: end; the next arm starts a new thread
                    continue
                remaining = due - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._thread_due = None
                try:
                    self._loop.call_soon_threadsafe(self._fire, self._thread_token)
                except RuntimeError:  # the loop is closed
                    break
            self._thread = None
