"""The read timeout of the nghttp2 engine's streams (``ReadTimeoutMs``): one timer per
connection for every stream whose request body the server is waiting on.

Go's ``ReadTimeout`` bounds the time to read a whole request; here, as in ``h2.py``, it
bounds the wait for one line of it (the whole body, unless it is NDJSON), so a streaming PUT
may run as long as its lines keep coming, and time the peer waits on the server (flow
control while the app is busy) does not count. A timer per wait would cost a heap entry per
request on the hot path; one timer, set for the earliest deadline, costs one per wait period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mly.http.h2native_stream import H2Stream

__all__ = ["ReadWatch"]


class ReadWatch:
    """The streams of one connection waiting for their peer's body, and the timer that calls
    ``overdue`` for those whose wait for the current line reached ``limit`` seconds."""

    __slots__ = ("handle", "limit", "loop", "overdue", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: float, overdue: Callable[[H2Stream], None]) -> None:
        self.loop = loop
        self.limit = limit  # 0: no limit
        self.overdue = overdue
        self.waiting: dict[int, H2Stream] = {}
        self.handle: asyncio.TimerHandle | None = None

    def start(self, stream: H2Stream) -> None:
        """The server waits for more of ``stream``'s body; earlier waits for the same line count."""
        if self.limit <= 0:
            return
        stream.wait_since = now = self.loop.time()
        self.waiting[stream.id] = stream
        due = now + self.limit - stream.waited
        handle = self.handle
        if handle is None or handle.when() > due:
            if handle is not None:
                handle.cancel()
            self.handle = self.loop.call_at(due, self.expire)

    def stop(self, stream: H2Stream) -> None:
        """The wait ``start`` began is over (body came, END_STREAM, a reset, the stream closed)."""
        if self.waiting.pop(stream.id, None) is not None:
            stream.waited += self.loop.time() - stream.wait_since

    def close(self) -> None:
        self.waiting.clear()
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def expire(self) -> None:
        self.handle = None
        now = self.loop.time()
        due = 0.0
        for stream in tuple(self.waiting.values()):
            deadline = stream.wait_since + self.limit - stream.waited
            if deadline > now:
                due = deadline if not due else min(due, deadline)
                continue
            self.stop(stream)
            self.overdue(stream)
        if due:
            self.handle = self.loop.call_at(due, self.expire)
