"""Batching on a fake model: fixed wait vs adaptive wait vs batching off, in one run.

The fake model costs ``a + b * rows`` with a = 350 µs per call and b = 5 µs per
row, spent in ``time.sleep`` (plus a little numpy work), and runs in a 2-thread
pool with ``max_concurrency = 2``: at most two calls at once, as on a 2-core
machine where TensorFlow calls compete for cores. ``time.sleep`` overshoots by
tens of µs, so the real per-call cost is somewhat above ``a``.

Clients are coroutines in a closed loop (each sends its next single-row request
when its answer arrives), at concurrency 1, 16 and 64, for a fixed number of
requests per case after a short warm-up (which also lets the adaptive policy learn
a and b). Printed: throughput and p50/p99 latency, and their ratio to batching off.

This measures the batcher alone; the end-to-end benchmark on a real TensorFlow
model behind the HTTP server is added by the integrator.

    python bench/bench_batching.py          # ~10 s
"""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mly.batching import Batcher, BatchSettings

FIXED_COST_S = 350e-6
ROW_COST_S = 5e-6
THREADS = 2
REQUESTS = 2000
WARMUP = 200
CONCURRENCY = (1, 16, 64)
MODES = {
    "off": BatchSettings(enabled=False, wait_us=0, max_concurrency=THREADS),
    "fixed 500us": BatchSettings(max_batch_size=256, wait_us=500, max_concurrency=THREADS),
    "adaptive": BatchSettings(max_batch_size=256, wait_us=500, adaptive=True, max_concurrency=THREADS),
}


def fake_model(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = feeds["x"]
    time.sleep(FIXED_COST_S + ROW_COST_S * len(x))
    return {"y": x * 2.0 + 1.0}


async def drive(batcher: Batcher, concurrency: int, count: int) -> tuple[float, list[float]]:
    """Send ``count`` single-row requests from ``concurrency`` clients; (seconds, latencies)."""
    latencies: list[float] = []
    remaining = count

    async def client(seed: int) -> None:
        nonlocal remaining
        feeds = {"x": np.array([float(seed)])}
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await batcher.submit(feeds, 1)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return time.perf_counter() - started, latencies


async def case(pool: ThreadPoolExecutor, settings: BatchSettings, concurrency: int) -> dict[str, float]:
    batcher = Batcher(fake_model, pool, settings, name="bench")
    await drive(batcher, concurrency, WARMUP)
    before = batcher.counters.batches, batcher.counters.rows
    elapsed, latencies = await drive(batcher, concurrency, REQUESTS)
    batches, rows = batcher.counters.batches - before[0], batcher.counters.rows - before[1]
    await batcher.close()
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "rps": REQUESTS / elapsed,
        "p50": cuts[49] * 1e3,
        "p99": cuts[98] * 1e3,
        "rows_per_call": rows / max(batches, 1),
        "policy": repr(batcher.policy),  # type: ignore[dict-item]
    }


async def main() -> None:
    print(f"fake model: a={FIXED_COST_S * 1e6:.0f}us + b={ROW_COST_S * 1e6:.0f}us/row (time.sleep), "
          f"{THREADS} threads, max_concurrency={THREADS}, {REQUESTS} single-row requests per case")
    header = f"{'conc':>4} {'mode':<12} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'rows/call':>9}  vs off: req/s  p50   p99"
    print(header)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="bench") as pool:
        for concurrency in CONCURRENCY:
            base: dict[str, float] | None = None
            for mode, settings in MODES.items():
                r = await case(pool, settings, concurrency)
                base = base or r
                print(
                    f"{concurrency:>4} {mode:<12} {r['rps']:>8.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
                    f"{r['rows_per_call']:>9.1f}  {r['rps'] / base['rps']:>12.2f}x "
                    f"{r['p50'] / base['p50']:>5.2f} {r['p99'] / base['p99']:>5.2f}"
                )
                if mode == "adaptive":
                    print(f"{'':>17}{r['policy']}")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
