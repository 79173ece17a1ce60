"""Operation metrics in the shape of Go's gmetric, cheap enough for the hot path.

An operation counts events (requests, TensorFlow calls, reloads) with their
duration in microseconds and, per event, at most one outcome value from a fixed
list (``eval``, ``invalid``, ``error``...). Totals run since start; ``Recent``
keeps the last few one-minute buckets, as Go's rolling window does. Recording is
a handful of integer updates on the caller's thread (the event loop); rendering
happens only when someone asks (``to_json``).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from mly.metrics.histogram import Histogram

__all__ = ["Operation", "Window"]

_time = time.time
UNIT = "1µs"
RECENT_UNIT = "1m0s"
RECENT_SECONDS = 60
TOP_ERRORS = 5
MAX_DISTINCT_ERRORS = 100


class Window:
    """Totals over one span of time: since start, or one recent bucket."""

    __slots__ = ("count", "max", "min", "minute", "time_taken", "values")

    def __init__(self, n_values: int, minute: int = 0) -> None:
        self.minute = minute
        self.count = 0
        self.time_taken = 0
        self.max = 0
        self.min = 0
        self.values = [0] * n_values

    def add(self, elapsed_us: int, index: int) -> None:
        self.count += 1
        self.time_taken += elapsed_us
        if elapsed_us > self.max:
            self.max = elapsed_us
        if elapsed_us < self.min or self.min == 0:
            self.min = elapsed_us
        if index >= 0:
            self.values[index] += 1

    def to_json(self, keys: Sequence[str], custom: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.count:
            out["Count"] = self.count
        out["Custom"] = custom
        counters = []
        for key, n in zip(keys, self.values):
            counter: dict[str, Any] = {"Value": key}
            if n:
                counter["Count"] = n
            counter["Custom"] = None
            if n and self.count:
                counter["Pct"] = 100 * n // self.count
            counters.append(counter)
        out["Counters"] = counters
        for name, value in (("TimeTaken", self.time_taken), ("Max", self.max), ("Min", self.min),
                            ("Avg", self.time_taken // self.count if self.count else 0)):
            if value:
                out[name] = value
        return out

    def metric(self, keys: Sequence[str], name: str) -> int | None:
        """One figure of Go's ``.../cumulative/{metric}`` routes (``None``: no such metric)."""
        simple = {"count": self.count, "min": self.min, "max": self.max, "timeTaken": self.time_taken,
                  "avg": self.time_taken // self.count if self.count else 0}
        if name in simple:
            return simple[name]
        key, _, pct = name.partition(".")
        if key in keys and pct in ("", "pct"):
            n = self.values[keys.index(key)]
            return (100 * n // self.count if self.count else 0) if pct else n
        return None


class Operation:
    """A named gmetric operation: totals plus ``recent_buckets`` one-minute windows."""

    def __init__(self, name: str, description: str, keys: Sequence[str] = (), *, location: str = "mly",
                 recent_buckets: int = 2, custom: Callable[[], Any] | None = None,
                 histogram: Sequence[float] | None = None) -> None:
        self.name = name
        self.description = description
        self.location = location
        self.keys = tuple(keys)
        self._index = {key: i for i, key in enumerate(self.keys)}
        self.total = Window(len(self.keys))
        self.recent = [Window(len(self.keys), -1) for _ in range(max(1, recent_buckets))]
        self._n_recent = len(self.recent)
        self._n_keys = len(self.keys)
        self._custom = custom
        self._errors: dict[str, int] | None = None
        self.active = 0
        self.peak_active = 0
        self.latency = Histogram(histogram) if histogram is not None else None
        """Durations in seconds, for Prometheus (``None``: not kept)."""

    def record(self, elapsed_us: int, value: str | None = None) -> None:
        """One finished event; ``value`` must be one of ``keys`` (or ``None``).

        Written out rather than calling ``Window.add`` twice: it runs on every request, and
        the two method calls were most of its cost."""
        total = self.total
        total.count += 1
        total.time_taken += elapsed_us
        if elapsed_us > total.max:
            total.max = elapsed_us
        if elapsed_us < total.min or not total.min:
            total.min = elapsed_us
        minute = int(_time()) // RECENT_SECONDS
        bucket = self.recent[minute % self._n_recent]
        if bucket.minute != minute:
            bucket.__init__(self._n_keys, minute)  # type: ignore[misc]
        bucket.count += 1
        bucket.time_taken += elapsed_us
        if elapsed_us > bucket.max:
            bucket.max = elapsed_us
        if elapsed_us < bucket.min or not bucket.min:
            bucket.min = elapsed_us
        if value is not None:
            index = self._index[value]
            total.values[index] += 1
            bucket.values[index] += 1
        latency = self.latency
        if latency is not None:
            seconds = elapsed_us / 1e6
            latency.counts[bisect_left(latency.bounds, seconds)] += 1
            latency.sum += seconds

    def record_error(self, elapsed_us: int, value: str, message: str) -> None:
        """An outcome whose message is kept for the top-errors list (Go's ``TopK`` custom)."""
        self.record(elapsed_us, value)
        errors = self._errors if self._errors is not None else {}
        self._errors = errors
        if message in errors or len(errors) < MAX_DISTINCT_ERRORS:
            errors[message] = errors.get(message, 0) + 1

    def enter(self) -> None:
        """Occupancy: one more in progress (Go's ``Occupancy`` custom reports the peak)."""
        self.active += 1
        if self.active > self.peak_active:
            self.peak_active = self.active

    def leave(self) -> None:
        self.active -= 1

    def custom(self) -> Any:
        if self._custom is not None:
            return self._custom()
        if self._errors:
            top = sorted(self._errors.items(), key=lambda item: -item[1])[:TOP_ERRORS]
            return {"Top": [{"Error": message, "Count": n} for message, n in top]}
        if self.peak_active:
            return {"Max": self.peak_active}
        return None

    def current(self) -> Window:
        """The bucket of this minute (empty if nothing was recorded in it)."""
        minute = int(time.time()) // RECENT_SECONDS
        bucket = self.recent[minute % len(self.recent)]
        return bucket if bucket.minute == minute else Window(len(self.keys), minute)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Location": self.location, "Name": self.name, "Description": self.description}
        out.update(self.total.to_json(self.keys, self.custom()))
        now = int(time.time()) // RECENT_SECONDS
        out["Recent"] = [
            (bucket if now - bucket.minute < len(self.recent) else Window(len(self.keys))).to_json(self.keys, None)
            for bucket in self.recent
        ]
        out["Unit"] = UNIT
        out["RecentUnit"] = RECENT_UNIT
        return out
