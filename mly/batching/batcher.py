"""Merge concurrent requests' rows into one model call, latency first.

A request joins the *open batch*. The batch is dispatched when its rows reach
``max_batch_size`` (``full``), when the wait policy says so (``instant`` at
once, ``timeout`` after holding), or on ``close()`` (``closing``). A dispatched
batch runs in the executor if fewer than ``max_concurrency`` batches are running;
otherwise it waits in the *queue* (FIFO). A full batch is queued at once, but a
batch whose wait is over while every slot is busy stays open and keeps taking
rows until a slot frees: dispatching it earlier would only queue it, so it
costs no one time, and the next call serves more rows for the same fixed cost.
(Go's ``BatcherConfig`` documents this behaviour; its dispatcher queues instead.)
A batch whose wait is over leaves once the loop has run what it already had
queued, so requests the loop has already read join it first, at no wait: after
an ``instant`` or ``timeout`` decision taken as a request joins, on the loop's
next pass over its ready callbacks; after the wait timer fires, one loop turn
later, which also reads the requests that arrived while the loop was busy (as
it is while writing the answers of a large batch that just finished). Without
that, on one core at high load, one to four requests left over by a large batch
left as a call of their own, about 40% of all calls.
While ``max_queued_batches`` batches are queued, ``submit`` raises
``OverloadedError`` (429) at once. With batching disabled every request is its
own batch (``direct``), bounded the same way.

A request whose deadline passes is answered at that moment by a timer (never
later, when a slot frees); if it has not been dispatched it leaves its batch and
its rows are not evaluated. One timer serves all deadlines: a model's requests
come with deadlines in the order they arrive (arrival time plus the model's
limit), so they wait in a FIFO and the timer is armed at its oldest request's
deadline; a request that finishes leaves the front as soon as it is there. Only
a deadline earlier than one already waiting gets a timer of its own. A merged
call that raises is re-run request by request, so only the request with bad
input gets the error.

All state lives on one event loop and changes only in ``submit`` and in loop
callbacks (the wait timer, a call finishing). There is no dispatcher task: a
task would add a loop hop to every request. The wait timer is a
``PreciseTimer``, since asyncio rounds an idle wait up to whole milliseconds.
Merging and splitting happen in the executor thread with the call. A one-row
request may hand in a ``DeferredRow`` (its values and a builder) instead of
columns: the batch then builds every such row's columns at once (``deferred.py``).
Not thread-safe: one batcher, one loop (bound on the first ``submit``).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np

from mly.batching.counters import BatcherCounters
from mly.batching.deferred import DeferredRow
from mly.batching.execution import BatchResult, Outputs, RunFunction, execute_batch
from mly.batching.policy import FixedWait, WaitPolicy, make_policy
from mly.batching.settings import BatchSettings
from mly.batching.timer import PreciseTimer
from mly.errors import DeadlineExceededError, EvaluationError, OverloadedError, RequestError
from mly.metrics.operation import Operation

__all__ = ["Batcher", "Outputs", "RunFunction"]


_PENDING, _RUNNING, _DONE = 0, 1, 2


class _Request:
    __slots__ = ("batch", "deadline", "feeds", "future", "rows", "state", "submitted_at", "timer")

    def __init__(self, feeds: Mapping[str, np.ndarray], rows: int, future: asyncio.Future[Outputs], now: float) -> None:
        self.feeds = feeds
        self.rows = rows
        self.future = future
        self.submitted_at = now
        self.state = _PENDING
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        """The request's own deadline timer, when its deadline came out of order (see ``_watch``)."""
        self.batch: _Batch | None = None


class _Batch:
    __slots__ = ("held", "live", "opened_at", "reason", "requests", "rows", "slot_waited")

    def __init__(self, opened_at: float, reason: str | None = None) -> None:
        self.requests: list[_Request] = []
        self.rows = 0
        self.live = 0
        self.opened_at = opened_at
        self.reason = reason
        """None while the wait runs; then why it is dispatched (when a slot is free)."""
        self.held = False
        self.slot_waited = False

    def add(self, request: _Request) -> None:
        request.batch = self
        self.requests.append(request)
        self.rows += request.rows
        self.live += 1


class Batcher:
    """One model's batcher: ``await submit(feeds, rows, deadline)`` returns that request's rows."""

    def __init__(self, run: RunFunction, executor: Executor, settings: BatchSettings, *, name: str = "model",
                 calls: Operation | None = None) -> None:
        self._run = run
        self.calls = calls if calls is not None else Operation(f"{name}Eval", "TensorFlow calls", ("error", "running"))
        """Every model call (count, duration, failures, peak concurrency): Go's ``{id}Eval``."""
        self._executor = executor
        self.settings = settings
        self.name = name
        self.policy: WaitPolicy = (
            make_policy(settings.wait_us, adaptive=settings.adaptive) if settings.enabled else FixedWait(0)
        )
        self.counters = BatcherCounters()
        self._limit = settings.max_concurrency or sys.maxsize
        self._max_rows = settings.max_batch_size if settings.max_batch_size > 0 else sys.maxsize
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open: _Batch | None = None
        self._queue: deque[_Batch] = deque()
        self._active = 0
        self._timer: PreciseTimer | None = None
        self._timer_at = 0.0
        self._due = 0.0
        self._closed = False
        self._drained: asyncio.Future[None] | None = None
        self._deadlines: deque[_Request] = deque()
        """Requests with a deadline, in arrival order, deadlines never decreasing (``_watch``)."""
        self._sweep_handle: asyncio.TimerHandle | None = None

    @property
    def active(self) -> int:
        """Batches running in the executor."""
        return self._active

    @property
    def queued(self) -> int:
        """Dispatched batches waiting for a free slot."""
        return len(self._queue)

    @property
    def shedding(self) -> bool:
        return len(self._queue) >= self.settings.max_queued_batches

    def stats(self) -> dict[str, Any]:
        """Go's ``meta/stats`` (``timeout`` = current wait in ns); ``{}`` when batching is off, as Go."""
        if not self.settings.enabled:
            return {}
        return {
            "activeEvaluators": self._active,
            "batchQueueLen": len(self._queue),
            "shedding": self.shedding,
            "timeout": int(self.policy.current_wait_us() * 1000),
        }

    async def submit(
        self, feeds: Mapping[str, np.ndarray], rows: int, deadline: float | None = None
    ) -> Outputs:
        """Evaluate ``rows`` rows; ``deadline`` is on ``loop.time()``.

        Raises ``OverloadedError`` when the queue is full, ``EvaluationError`` when
        the deadline passes or the batcher is closed, and whatever ``run`` raised
        on this request's own rows.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._timer = PreciseTimer(loop, self._on_timer, name=self.name)
        if self._closed:
            raise EvaluationError(f"model {self.name!r}: batcher closed")
        if type(feeds) is DeferredRow:
            if rows != 1:
                raise ValueError(f"a deferred row is one row, not {rows}")
        elif rows < 1 or any(len(column) != rows for column in feeds.values()):
            raise ValueError(f"every feed must hold rows={rows} >= 1 values")
        if len(self._queue) >= self.settings.max_queued_batches:
            self.counters.overloaded += 1
            raise OverloadedError(
                f"model {self.name!r}: overloaded: {len(self._queue)} batches queued (MaxQueuedBatches)"
            )
        now = loop.time()
        if deadline is not None and deadline <= now:
            self.counters.deadline_exceeded += 1
            raise DeadlineExceededError(f"model {self.name!r}: deadline exceeded before queuing")
        request = _Request(feeds, rows, loop.create_future(), now)
        self.counters.requests += 1
        if deadline is not None:
            self._watch(request, deadline)
        if self.settings.enabled:
            self._join(request, now)
        else:
            batch = _Batch(now, "direct")
            batch.add(request)
            self._queue.append(batch)
            self._pump()
        try:
            return await request.future
        finally:
            if request.timer is not None:
                request.timer.cancel()
            if request.state == _PENDING:  # the caller was cancelled
                self._withdraw(request)
            deadlines = self._deadlines
            while deadlines and deadlines[0].future.done():
                deadlines.popleft()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop accepting, dispatch the open batch (``closing``) and wait for every batch to finish."""
        self._closed = True
        if self._loop is None:
            return
        batch = self._open
        if batch is not None and batch.reason is None:
            batch.reason = "closing"
            self._cancel_timer()
        self._pump()
        if self._busy():
            if self._drained is None:
                self._drained = self._loop.create_future()
            await asyncio.shield(self._drained)
        if self._timer is not None:
            self._timer.close()
        if self._sweep_handle is not None and not self._deadlines:
            self._sweep_handle.cancel()
            self._sweep_handle = None

    # -- on the loop --------------------------------------------------------------------------

    def _join(self, request: _Request, now: float) -> None:
        self.policy.arrived(now, request.rows)
        batch = self._open
        if batch is None:
            batch = self._open = _Batch(now)
        batch.add(request)
        if batch.rows >= self._max_rows:
            self._open = None
            self._cancel_timer()
            batch.reason = "full"
            self._queue.append(batch)
            self._pump()
            return
        if batch.reason is not None:  # waiting for a slot already
            return
        due = self.policy.dispatch_at(batch.opened_at, now, batch.live, batch.rows)
        if due is None:
            batch.reason = "timeout" if batch.held else "instant"
            self._cancel_timer()
            assert self._loop is not None
            self._loop.call_soon(self._pump)  # after what the loop already queued (module docstring)
        else:
            batch.held = True
            self._arm(due)

    def _arm(self, due: float) -> None:
        assert self._timer is not None
        self._due = due
        if self._timer.when is not None and due >= self._timer_at:
            return  # the timer re-arms itself when it fires before the later deadline
        self._timer_at = due
        self._timer.arm(due)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _on_timer(self) -> None:
        batch = self._open
        if batch is None or batch.reason is not None:
            return
        if self._due > self._timer_at:
            self._arm(self._due)
            return
        batch.reason = "timeout"
        # One loop turn first: requests received while the loop was busy are read and join.
        loop = self._loop
        assert loop is not None
        loop.call_at(loop.time(), loop.call_soon, self._pump)

    def _pump(self) -> None:
        """Start queued batches, then an open batch whose wait is over, while slots are free."""
        while self._active < self._limit:
            if self._queue:
                batch = self._queue.popleft()
            elif self._open is not None and self._open.reason is not None:
                batch, self._open = self._open, None
                self._cancel_timer()
            else:
                break
            if batch.live:
                self._start(batch)
        waiting = self._open
        if waiting is not None and waiting.reason is not None and not waiting.slot_waited:
            waiting.slot_waited = True
            self.counters.slot_waits += 1
        self._check_drained()

    def _start(self, batch: _Batch) -> None:
        assert self._loop is not None and batch.reason is not None
        requests = [r for r in batch.requests if r.state == _PENDING]
        # Each request points at its batch (to leave it while pending); the batch's list points
        # back. Dropping the list now lets reference counting free the whole batch, where the
        # cycle left every request's future, timer and feeds for the garbage collector.
        batch.requests = []
        now = self._loop.time()
        counters = self.counters
        for request in requests:
            request.state = _RUNNING
            waited = now - request.submitted_at
            counters.queue_wait_total_s += waited
            counters.queue_wait_max_s = max(counters.queue_wait_max_s, waited)
        counters.count_dispatch(batch.reason, batch.rows)
        self._active += 1
        self.calls.enter()
        try:
            future = self._executor.submit(execute_batch, self._run, [(r.feeds, r.rows) for r in requests])
        except RuntimeError as exc:  # the executor was shut down
            self._active -= 1
            for request in requests:
                request.state = _DONE
                if not request.future.done():
                    request.future.set_exception(EvaluationError(f"model {self.name!r}: cannot run: {exc}"))
            return
        # Straight back to the loop: one hop, where run_in_executor's chained future takes two.
        future.add_done_callback(functools.partial(self._post, requests))

    def _post(self, requests: list[_Request], future: Future[BatchResult]) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._finished, requests, future)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _finished(self, requests: list[_Request], future: Future[BatchResult]) -> None:
        self._active -= 1
        self.calls.leave()
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:
            message = f"model {self.name!r}: evaluation failed: {error or 'cancelled'}"
            results: list[Any] = [EvaluationError(message) for _ in requests]
        else:
            results, timings, failed = future.result()
            for rows, seconds in timings:
                self.policy.ran(rows, seconds)
                self.calls.record(int(seconds * 1e6))
            self.counters.failed_batches += failed
        for request, result in zip(requests, results):
            request.state = _DONE
            if request.future.done():  # its deadline passed while running
                continue
            if isinstance(result, BaseException):
                if not isinstance(result, RequestError):  # a bad value of a deferred row is not a failed call
                    self.counters.errors += 1
                    self.calls.record(0, "error")
                request.future.set_exception(result)
            else:
                request.future.set_result(result)
        self._pump()

    def _watch(self, request: _Request, deadline: float) -> None:
        """Answer ``request`` when ``deadline`` passes: by the shared timer, or its own when out of order."""
        assert self._loop is not None
        request.deadline = deadline
        deadlines = self._deadlines
        if deadlines and deadline < deadlines[-1].deadline:
            request.timer = self._loop.call_at(deadline, self._expire, request)
            return
        deadlines.append(request)
        if self._sweep_handle is None:
            self._sweep_handle = self._loop.call_at(deadline, self._sweep)

    def _sweep(self) -> None:
        """Expire every waiting request whose deadline has passed; re-arm for the oldest left."""
        assert self._loop is not None
        self._sweep_handle = None
        now = self._loop.time()
        deadlines = self._deadlines
        while deadlines:
            request = deadlines[0]
            if not request.future.done():
                if request.deadline > now:
                    self._sweep_handle = self._loop.call_at(request.deadline, self._sweep)
                    return
                self._expire(request)
            deadlines.popleft()

    def _expire(self, request: _Request) -> None:
        request.timer = None
        if request.future.done():
            return
        self.counters.deadline_exceeded += 1
        assert self._loop is not None
        if request.state == _PENDING:
            waited_ms = (self._loop.time() - request.submitted_at) * 1000
            self._withdraw(request)
            message = f"deadline exceeded after {waited_ms:.1f} ms waiting in the batch queue"
        else:
            message = "deadline exceeded while evaluating"
        request.future.set_exception(DeadlineExceededError(f"model {self.name!r}: {message}"))

    def _withdraw(self, request: _Request) -> None:
        """Take a not yet dispatched request out of its batch; an emptied batch is dropped."""
        request.state = _DONE
        batch = request.batch
        assert batch is not None
        batch.live -= 1
        batch.rows -= request.rows
        if batch.live:
            return
        if batch is self._open:
            self._open = None
            self._cancel_timer()
        else:
            try:
                self._queue.remove(batch)
            except ValueError:
                pass
        self._check_drained()

    def _busy(self) -> bool:
        return self._active > 0 or bool(self._queue) or self._open is not None

    def _check_drained(self) -> None:
        if self._drained is not None and not self._drained.done() and not self._busy():
            self._drained.set_result(None)
