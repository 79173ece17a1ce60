"""The batcher on a real thread pool with a fake model.

``FakeModel`` is not a mock of TensorFlow and checks nothing about it: it stands
for any blocking ``run`` callable, doing real numpy work on its rows (so every
answer can be traced to its inputs) and ``time.sleep`` for a call's cost. A
TensorFlow-based test is added by the integrator.

Assertions are on results, counters and ordering, never on elapsed time; where
a call must still be running, it is held on a ``threading.Event`` instead.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pytest

from mly.batching import Batcher, BatchSettings
from mly.errors import EvaluationError, OverloadedError

T = TypeVar("T")
POISON = -1
LONG_WAIT_US = 10_000_000  # 10 s: a batch never times out during a test


class FakeModel:
    """``x`` (int64) and ``s`` (str) columns in; three outputs derived row by row."""

    def __init__(self, fixed_s: float = 0.0, row_s: float = 0.0) -> None:
        self.fixed_s, self.row_s = fixed_s, row_s
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.calls: list[list[int]] = []  # the x values of every call, in call order
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Make the next calls block until ``release``."""
        self.gate.clear()
        self.started.clear()

    def release(self) -> None:
        self.gate.set()

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x, s = feeds["x"], feeds["s"]
        with self._lock:
            self.calls.append(x.tolist())
        self.started.set()
        self.gate.wait(10)
        if (x == POISON).any():
            raise ValueError("poison row")
        time.sleep(self.fixed_s + self.row_s * len(x))
        label = np.array([f"{a}:{b}" for a, b in zip(s, x)], dtype=object)
        return {"double": x * 2, "label": label, "pair": np.stack([x, x + 1], axis=1)}

    @property
    def call_sizes(self) -> list[int]:
        return [len(c) for c in self.calls]


def feeds(xs: list[int]) -> dict[str, np.ndarray]:
    x = np.array(xs, dtype=np.int64)
    s = np.array([f"r{v}" for v in xs], dtype=object)
    return {"x": x, "s": s}


def check(result: Any, xs: list[int]) -> None:
    x = np.array(xs, dtype=np.int64)
    np.testing.assert_array_equal(result["double"], x * 2)
    np.testing.assert_array_equal(result["pair"], np.stack([x, x + 1], axis=1))
    assert list(result["label"]) == [f"r{v}:{v}" for v in xs]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-batch")
    yield executor
    executor.shutdown(wait=True)


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(main())  # type: ignore[arg-type]


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate`` holds (bounded by the test timeout)."""
    while not predicate():
        await asyncio.sleep(0.001)


def test_rows_go_back_to_their_own_request_under_heavy_concurrency(pool: ThreadPoolExecutor) -> None:
    model = FakeModel(fixed_s=0.001, row_s=0.00001)
    settings = BatchSettings(max_batch_size=64, wait_us=200, max_concurrency=2)
    rng = random.Random(7)
    sizes = [rng.randint(1, 20) for _ in range(300)]
    inputs, start = [], 0
    for size in sizes:
        inputs.append(list(range(start, start + size)))
        start += size + 1000

    async def main() -> Batcher:
        batcher = Batcher(model, pool, settings, name="m")

        async def one(xs: list[int]) -> None:
            await asyncio.sleep(rng.random() * 0.01)
            check(await batcher.submit(feeds(xs), len(xs), None), xs)

        await asyncio.gather(*(one(xs) for xs in inputs))
        await batcher.close()
        return batcher

    batcher = run(main)
    c = batcher.counters
    assert c.requests == 300 and c.rows == sum(sizes) and c.errors == 0
    assert c.batches < 300  # requests shared calls
    assert sorted(v for call in model.calls for v in call) == sorted(v for xs in inputs for v in xs)
    assert max(model.call_sizes) < 64 + 20  # soft limit: the last request may overshoot
    assert c.max_batch_rows == max(model.call_sizes)
    assert sum(c.batch_rows_histogram.values()) == c.batches


def test_instant_dispatch_when_wait_is_zero(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()

    async def main() -> Batcher:
        batcher = Batcher(model, pool, BatchSettings(wait_us=0))
        for i in range(5):
            check(await batcher.submit(feeds([i]), 1), [i])
        return batcher

    c = run(main).counters
    assert (c.instant, c.timeout, c.full, c.batches) == (5, 0, 0, 5)


def test_full_batches_dispatch_without_waiting_and_overshoot_softly(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    settings = BatchSettings(max_batch_size=5, wait_us=LONG_WAIT_US)

    async def main() -> Batcher:
        batcher = Batcher(model, pool, settings)
        xs = [[10 * i, 10 * i + 1, 10 * i + 2] for i in range(4)]  # 3 rows each
        results = await asyncio.gather(*(batcher.submit(feeds(x), 3) for x in xs))
        for x, result in zip(xs, results):
            check(result, x)
        return batcher

    c = run(main).counters
    assert (c.full, c.timeout, c.batches) == (2, 0, 2)
    assert model.call_sizes == [6, 6]  # 3 + 3 >= 5: one request over the limit, as Go


def test_timeout_dispatches_what_arrived_within_the_wait(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()

    async def main() -> Batcher:
        batcher = Batcher(model, pool, BatchSettings(max_batch_size=100, wait_us=20_000))
        results = await asyncio.gather(*(batcher.submit(feeds([i]), 1) for i in range(3)))
        for i, result in enumerate(results):
            check(result, [i])
        return batcher

    batcher = run(main)
    assert (batcher.counters.timeout, batcher.counters.batches) == (1, 1)
    assert model.call_sizes == [3]
    assert batcher.stats() == {"activeEvaluators": 0, "batchQueueLen": 0, "shedding": False, "timeout": 20_000_000}


def test_close_dispatches_the_open_batch_and_drains(pool: ThreadPoolExecutor) -> None:
    model = FakeModel(fixed_s=0.002)

    async def main() -> Batcher:
        batcher = Batcher(model, pool, BatchSettings(wait_us=LONG_WAIT_US))
        tasks = [asyncio.create_task(batcher.submit(feeds([i]), 1)) for i in range(4)]
        await asyncio.sleep(0)  # all four join the open batch
        await batcher.close()
        assert all(t.done() for t in tasks)
        for i, task in enumerate(tasks):
            check(task.result(), [i])
        with pytest.raises(EvaluationError, match="closed"):
            await batcher.submit(feeds([9]), 1)
        return batcher

    c = run(main).counters
    assert (c.closing, c.batches) == (1, 1)
    assert model.call_sizes == [4]


def test_a_batch_whose_wait_is_over_keeps_taking_rows_until_a_slot_frees(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()

    async def main() -> Batcher:
        batcher = Batcher(model, pool, BatchSettings(wait_us=0, max_concurrency=1))
        model.hold()
        first = asyncio.create_task(batcher.submit(feeds([0]), 1))
        await until(lambda: batcher.active == 1)
        rest = [asyncio.create_task(batcher.submit(feeds([i]), 1)) for i in range(1, 6)]
        await asyncio.sleep(0)
        assert batcher.stats()["batchQueueLen"] == 0  # held open, not queued
        model.release()
        for i, task in enumerate([first, *rest]):
            check(await task, [i])
        return batcher

    c = run(main).counters
    assert model.call_sizes == [1, 5]
    assert (c.instant, c.slot_waits, c.batches) == (2, 1, 2)


def test_full_queue_sheds_with_429_at_once_and_recovers(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    settings = BatchSettings(max_batch_size=1, wait_us=LONG_WAIT_US, max_concurrency=1, max_queued_batches=2)

    async def main() -> Batcher:
        batcher = Batcher(model, pool, settings)
        model.hold()
        try:
            tasks = [asyncio.create_task(batcher.submit(feeds([i]), 1)) for i in range(3)]
            await asyncio.sleep(0)
            assert batcher.stats()["shedding"] and batcher.queued == 2
            with pytest.raises(OverloadedError, match="overloaded"):
                await batcher.submit(feeds([99]), 1)
        finally:
            model.release()
        for i, task in enumerate(tasks):
            check(await task, [i])
        assert not batcher.shedding
        check(await batcher.submit(feeds([5]), 1), [5])
        return batcher

    c = run(main).counters
    assert c.overloaded == 1 and c.full == 4
    assert [v for call in model.calls for v in call] == [0, 1, 2, 5]  # 99 never ran


def test_deadline_while_queued_is_answered_before_a_slot_frees(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()

    async def main() -> Batcher:
        loop = asyncio.get_running_loop()
        batcher = Batcher(model, pool, BatchSettings(wait_us=0, max_concurrency=1))
        model.hold()
        try:
            first = asyncio.create_task(batcher.submit(feeds([0]), 1))
            await until(lambda: batcher.active == 1)
            late = asyncio.create_task(batcher.submit(feeds([1]), 1, loop.time() + 0.02))
            kept = asyncio.create_task(batcher.submit(feeds([2]), 1))
            with pytest.raises(EvaluationError, match="deadline exceeded"):
                await asyncio.wait_for(late, 5)
            assert not model.gate.is_set() and batcher.active == 1  # answered while the slot was busy
        finally:
            model.release()
        check(await first, [0])
        check(await kept, [2])
        return batcher

    batcher = run(main)
    assert model.calls == [[0], [2]]  # the expired row was never evaluated
    assert batcher.counters.deadline_exceeded == 1


def test_deadline_in_the_past_and_while_running(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()

    async def main() -> Batcher:
        loop = asyncio.get_running_loop()
        batcher = Batcher(model, pool, BatchSettings(wait_us=0))
        with pytest.raises(EvaluationError, match="deadline exceeded before"):
            await batcher.submit(feeds([0]), 1, loop.time() - 1)
        model.hold()
        try:
            with pytest.raises(EvaluationError, match="deadline exceeded while evaluating"):
                await batcher.submit(feeds([1]), 1, loop.time() + 0.02)
        finally:
            model.release()
        await batcher.close()
        return batcher

    batcher = run(main)
    assert batcher.counters.deadline_exceeded == 2 and model.calls == [[1]]


def test_cancelled_caller_leaves_its_batch(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = Batcher(model, pool, BatchSettings(wait_us=LONG_WAIT_US, max_batch_size=3))
        gone = asyncio.create_task(batcher.submit(feeds([0]), 1))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        results = await asyncio.gather(*(batcher.submit(feeds([i]), 1) for i in (1, 2, 3)))
        for i, result in zip((1, 2, 3), results):
            check(result, [i])

    run(main)
    assert model.calls == [[1, 2, 3]]


def test_only_the_culprit_gets_the_error(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()

    async def main() -> Batcher:
        batcher = Batcher(model, pool, BatchSettings(wait_us=20_000, max_batch_size=100))
        xs = [[0, 1], [2], [3, POISON], [4, 5, 6], [7]]
        results = await asyncio.gather(*(batcher.submit(feeds(x), len(x)) for x in xs), return_exceptions=True)
        assert isinstance(results[2], ValueError) and "poison" in str(results[2])
        for x, result in zip(xs, results):
            if x is not xs[2]:
                check(result, x)
        return batcher

    c = run(main).counters
    assert model.call_sizes[0] == 9 and sorted(model.call_sizes[1:]) == [1, 1, 2, 2, 3]
    assert (c.failed_batches, c.errors, c.batches) == (1, 1, 1)


def test_outputs_without_a_row_per_input_fall_back_to_single_calls(pool: ThreadPoolExecutor) -> None:
    def summed(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"total": np.array([feeds["x"].sum()])}

    async def main() -> list[Any]:
        batcher = Batcher(summed, pool, BatchSettings(wait_us=20_000))
        return await asyncio.gather(*(batcher.submit({"x": np.arange(n)}, n) for n in (2, 3)))

    first, second = run(main)
    assert first["total"].tolist() == [1] and second["total"].tolist() == [3]


def test_disabled_batching_runs_each_request_alone_still_bounded(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    settings = BatchSettings(enabled=False, wait_us=0, max_concurrency=1, max_queued_batches=2)

    async def main() -> Batcher:
        batcher = Batcher(model, pool, settings)
        assert batcher.stats() == {}  # Go: no batcher, no stats
        model.hold()
        try:
            tasks = [asyncio.create_task(batcher.submit(feeds([i, i + 100]), 2)) for i in range(3)]
            await asyncio.sleep(0)
            assert batcher.active == 1 and batcher.queued == 2
            with pytest.raises(OverloadedError):
                await batcher.submit(feeds([7]), 1)
        finally:
            model.release()
        for i, task in enumerate(tasks):
            check(await task, [i, i + 100])
        await batcher.close()
        return batcher

    c = run(main).counters
    assert model.calls == [[0, 100], [1, 101], [2, 102]]
    assert (c.direct, c.batches, c.overloaded, c.instant + c.timeout + c.full) == (3, 3, 1, 0)


def test_adaptive_does_not_hold_a_lone_client(pool: ThreadPoolExecutor) -> None:
    model = FakeModel(fixed_s=0.001)

    async def main() -> Batcher:
        batcher = Batcher(model, pool, BatchSettings(wait_us=5_000, adaptive=True))
        for i in range(30):
            check(await batcher.submit(feeds([i]), 1), [i])
        return batcher

    batcher = run(main)
    assert (batcher.counters.instant, batcher.counters.timeout) == (30, 0)
    assert batcher.stats()["timeout"] == 0


def test_submit_checks_the_row_count(pool: ThreadPoolExecutor) -> None:
    async def main() -> None:
        batcher = Batcher(FakeModel(), pool, BatchSettings())
        with pytest.raises(ValueError):
            await batcher.submit(feeds([1, 2]), 3)
        with pytest.raises(ValueError):
            await batcher.submit(feeds([]), 0)

    run(main)


def test_a_shut_down_executor_fails_the_request_cleanly() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    executor.shutdown()

    async def main() -> Batcher:
        batcher = Batcher(FakeModel(), executor, BatchSettings(wait_us=0))
        with pytest.raises(EvaluationError, match="cannot run"):
            await batcher.submit(feeds([1]), 1)
        await batcher.close()
        return batcher

    assert run(main).active == 0


def test_adaptive_stats_report_the_current_wait_in_ns(pool: ThreadPoolExecutor) -> None:
    async def main() -> dict[str, Any]:
        batcher = Batcher(FakeModel(), pool, BatchSettings(wait_us=500, adaptive=True))
        stats = batcher.stats()
        await batcher.close()
        return stats

    assert run(main) == {"activeEvaluators": 0, "batchQueueLen": 0, "shedding": False, "timeout": 0}


def test_deadlines_out_of_arrival_order_are_each_met_in_time_order(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    offsets = [0.04, 0.08, 0.02, 0.12]  # the third comes in earlier than those before it

    async def main() -> list[tuple[int, float, float]]:
        loop = asyncio.get_running_loop()
        batcher = Batcher(model, pool, BatchSettings(wait_us=0, max_concurrency=1))
        model.hold()
        expired: list[tuple[int, float, float]] = []  # (row, deadline, when it was answered)

        async def one(x: int, deadline: float) -> None:
            with pytest.raises(EvaluationError, match="deadline exceeded"):
                await batcher.submit(feeds([x]), 1, deadline)
            expired.append((x, deadline, loop.time()))

        try:
            first = asyncio.create_task(batcher.submit(feeds([100]), 1, loop.time() + 60))
            await until(lambda: batcher.active == 1)
            now = loop.time()
            await asyncio.wait_for(asyncio.gather(*(one(i, now + o) for i, o in enumerate(offsets))), 10)
        finally:
            model.release()
        check(await first, [100])
        await batcher.close()
        return expired

    expired = run(main)
    assert [x for x, _, _ in expired] == [2, 0, 1, 3]  # by deadline, not by arrival
    assert all(answered >= deadline for _, deadline, answered in expired)  # never early
    assert model.calls == [[100]]


def test_finished_requests_are_freed_without_the_garbage_collector(pool: ThreadPoolExecutor) -> None:
    """Nothing of a finished request outlives it: not in a reference cycle, nor in the deadline queue."""
    import gc
    import weakref

    model = FakeModel(fixed_s=0.001)

    async def main() -> list[weakref.ref[np.ndarray]]:
        loop = asyncio.get_running_loop()
        batcher = Batcher(model, pool, BatchSettings(wait_us=2000, max_batch_size=8))
        refs: list[weakref.ref[np.ndarray]] = []

        async def one(x: int) -> None:
            columns = feeds([x])
            refs.append(weakref.ref(columns["x"]))
            check(await batcher.submit(columns, 1, loop.time() + 60), [x])

        await asyncio.gather(*(one(x) for x in range(40)))
        await batcher.close()
        return refs

    gc.collect()
    gc.disable()
    try:
        refs = run(main)
        alive = sum(ref() is not None for ref in refs)
    finally:
        gc.enable()
    assert alive == 0
    assert len(model.calls) > 1  # the requests did share calls, in more than one batch


def test_requests_the_loop_already_queued_join_a_batch_whose_wait_is_over(pool: ThreadPoolExecutor) -> None:
    """An instant dispatch, and a wait timer firing after the loop was busy, both leave only after
    the requests already queued on the loop joined (one call, not one per request)."""
    model = FakeModel()

    async def main() -> tuple[Batcher, Batcher]:
        instant = Batcher(model, pool, BatchSettings(wait_us=0))
        results = await asyncio.gather(*(instant.submit(feeds([i]), 1) for i in range(5)))
        for i, result in enumerate(results):
            check(result, [i])

        timed = Batcher(model, pool, BatchSettings(wait_us=1000))
        first = asyncio.create_task(timed.submit(feeds([10]), 1))
        await asyncio.sleep(0)  # ``first`` holds the batch open; its wait timer is armed
        later: list[asyncio.Task[Any]] = []

        def busy() -> None:
            time.sleep(0.005)  # the loop is busy past the wait; then three requests are queued
            later.extend(asyncio.create_task(timed.submit(feeds([x]), 1)) for x in (11, 12, 13))

        asyncio.get_running_loop().call_soon(busy)
        check(await first, [10])
        for x, task in zip((11, 12, 13), later):
            check(await task, [x])
        return instant, timed

    instant, timed = run(main)
    assert model.call_sizes == [5, 4]
    assert (instant.counters.instant, instant.counters.batches) == (1, 1)
    assert (timed.counters.timeout, timed.counters.batches) == (1, 1)
