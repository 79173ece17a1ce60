"""A bucket histogram cheap enough to observe on every request (one bisect, two adds)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["GO_IDLETIME_BUCKETS_NS", "LATENCY_BUCKETS_S", "Histogram"]

#: Request and TensorFlow-call latency buckets (seconds): 50 µs to 10 s.
LATENCY_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                     0.5, 1.0, 2.5, 10.0)
#: Go mly's default ``mly_model_idletime`` buckets, in nanoseconds.
GO_IDLETIME_BUCKETS_NS = (10, 100, 1e3, 2.5e3, 5e3, 7.5e3, 1e4, 2.5e4, 5e4, 7.5e4, 1e5, 2.5e5, 5e5, 7.5e5, 1e6,
                          2.5e6, 5e6, 7.5e6, 1e7, 5e7, 1e8, 5e8, 1e9)


class Histogram:
    """Counts per upper bound (``le``, Prometheus semantics), plus +Inf, sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(float(b) for b in bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(le, count)`` pairs, cumulative, the last one ``+Inf``."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            running += n
            out.append((bound, running))
        return out
