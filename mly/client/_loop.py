"""The sync client's private event loop: the bottom of ``mly.client``, importing none of it.

Redis and Aerospike tiers are the server's async stores; a sync ``Client`` (and
``SharedStores.close``) runs them on one event loop thread per process, so the
tier logic (breakers, timeouts, upward copies, write-behind) is the server's,
not a second copy. Kept apart from ``_sync`` so the stores and the sync client
both depend on it and never on each other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BackgroundLoop", "background_loop", "run_inline"]

_T = TypeVar("_T")


class BackgroundLoop:
    """An event loop in a daemon thread, for the async store clients of sync callers."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="mly-client-stores", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], *, timeout_s: float | None = None) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


_LOOP: BackgroundLoop | None = None
_LOOP_LOCK = threading.Lock()


def _new_lock_in_child() -> None:
    """A lock some parent thread held at the fork would stay held in the child for ever."""
    global _LOOP_LOCK
    _LOOP_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def background_loop() -> BackgroundLoop:
    """The process's store loop, started on first use (and again in a forked child)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.pid != os.getpid():
            _LOOP = BackgroundLoop()
        return _LOOP


def run_inline(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never suspends (a memory-only ``TieredCache.get_many``) on this thread."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("run_inline: the coroutine suspended")
