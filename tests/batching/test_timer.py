"""PreciseTimer: fires once on the loop, cancel and re-arm win over a pending firing."""

from __future__ import annotations

import asyncio
import threading

from mly.batching.timer import PreciseTimer


def timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mly-batch-timer-t"]


def test_fires_once_on_the_loop_thread() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fired: list[threading.Thread] = []
        done = asyncio.Event()

        def callback() -> None:
            fired.append(threading.current_thread())
            done.set()

        timer = PreciseTimer(loop, callback, name="t")
        timer.arm(loop.time() + 0.0003)
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.02)  # the second arming (loop or thread) must stay silent
        assert fired == [threading.current_thread()] and timer.when is None
        timer.close()

    asyncio.run(main())


def test_cancel_and_rearm_drop_the_earlier_deadline() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        timer = PreciseTimer(loop, lambda: fired.append(loop.time()), name="t")
        timer.arm(loop.time() + 0.002)
        timer.cancel()
        await asyncio.sleep(0.03)
        assert fired == []
        timer.arm(loop.time() + 0.001)
        due = loop.time() + 0.004
        timer.arm(due)  # moved later: the 1 ms deadline no longer counts
        await asyncio.sleep(0.05)
        assert len(fired) == 1 and fired[0] >= due - 1e-6
        timer.close()

    asyncio.run(main())
    for thread in timer_threads():
        thread.join(5)
    assert timer_threads() == []
