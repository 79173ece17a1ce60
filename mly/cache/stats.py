"""Counters of one tiered cache: plain ints, bumped from the event loop thread.

Units: ``hits_*``, ``misses``, ``negative_hits``, ``stale`` count keys;
``errors``, ``timeouts`` and ``breaker_open_skips`` count store calls (reads and
writes, one call covers a whole batch); ``writes``, ``write_errors`` and
``write_dropped`` count rows per store written. Plain attributes rather than
metric objects keep the hot path to an integer add; ``mly.metrics`` reads
``as_dict()`` when it exports.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["CacheCounters", "cache_tier_stats"]


@dataclass(slots=True)
class CacheCounters:
    hits_memory: int = 0
    hits_l1: int = 0
    hits_l2: int = 0
    misses: int = 0
    """Keys no tier could answer (errors and skipped tiers included)."""
    negative_hits: int = 0
    """Keys the memory tier knows are absent everywhere (Go's NotFound marker)."""
    stale: int = 0
    """External entries whose dictHash differs from the current dictionary."""
    errors: int = 0
    timeouts: int = 0
    breaker_open_skips: int = 0
    writes: int = 0
    write_errors: int = 0
    write_dropped: int = 0
    """Rows not written: write queue full, breaker open, or still queued at close."""
    _queue: Sized | None = field(default=None, repr=False, compare=False)

    def bind_queue(self, queue: Sized) -> None:
        """Let ``write_queue_depth`` report the length of the tiered cache's write queue."""
        self._queue = queue

    @property
    def write_queue_depth(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        out["write_queue_depth"] = self.write_queue_depth
        return out


def cache_tier_stats(datastore: str, counters: CacheCounters) -> dict[str, Any]:
    """Per-tier outcome of the row lookups of ``datastore`` (``meta/stats``): which tier
    answered, and the share answered at all. A datastore shared by several models counts
    every model's rows."""
    hits = counters.hits_memory + counters.hits_l1 + counters.hits_l2
    lookups = hits + counters.misses
    return {"datastore": datastore, "lookups": lookups, "hitsMemory": counters.hits_memory,
            "hitsL1": counters.hits_l1, "hitsL2": counters.hits_l2, "misses": counters.misses,
            "negativeHits": counters.negative_hits, "hitRate": round(hits / lookups, 6) if lookups else 0.0}
