"""Where one model's answered rows came from: the memo, a cache tier, or the model.

On traffic whose rows repeat while whole bodies do not (a page asking for scores of N
candidates), the speed comes from the per-row cache alone; a user reading ``meta/stats``
should see that, per model, without adding up the datastore's counters (which a datastore
shared by several models mixes). Plain ints bumped on the event loop thread, as the cache's
own counters are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RowOutcomes"]


@dataclass(slots=True)
class RowOutcomes:
    requests: int = 0
    """Successful eval requests (a failed one has no rows to tell about)."""
    rows: int = 0
    cached_rows: int = 0
    """Rows answered without evaluating them: from the memo or any cache tier."""
    memo_rows: int = 0
    all_cached: int = 0
    """Requests whose every row came from a cache tier or the memo."""
    partly_cached: int = 0
    none_cached: int = 0
    memo_requests: int = 0

    def record(self, rows: int, cached_rows: int) -> None:
        self.requests += 1
        self.rows += rows
        self.cached_rows += cached_rows
        if cached_rows >= rows:
            self.all_cached += 1
        elif cached_rows:
            self.partly_cached += 1
        else:
            self.none_cached += 1

    def record_memo(self, rows: int) -> None:
        self.record(rows, rows)
        self.memo_rows += rows
        self.memo_requests += 1

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "rows": self.rows, "cachedRows": self.cached_rows,
                "memoRows": self.memo_rows, "uncachedRows": self.rows - self.cached_rows,
                "rowHitRate": round(self.cached_rows / self.rows, 6) if self.rows else 0.0,
                "requestsAllCached": self.all_cached, "requestsPartlyCached": self.partly_cached,
                "requestsNoneCached": self.none_cached, "requestsFromMemo": self.memo_requests}
