"""What a batcher did: dispatch reasons, batch sizes, queue waits, shedding, failures.

Plain integers and floats updated on the batcher's event loop (no locks, no
metric library), read by whoever exports them: ``as_dict()`` is JSON-ready.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BatcherCounters"]


@dataclass(slots=True)
class BatcherCounters:
    """Totals since the batcher started; updated on the event loop only."""

    full: int = 0
    timeout: int = 0
    instant: int = 0
    closing: int = 0
    direct: int = 0
    """Dispatches by reason (Go's ``{id}Dispatcher`` counters; ``direct`` = batching off)."""
    requests: int = 0
    """Accepted submissions."""
    batches: int = 0
    rows: int = 0
    """Dispatched batches and their rows."""
    max_batch_rows: int = 0
    batch_rows_histogram: dict[int, int] = field(default_factory=dict)
    """Batches by size, keyed by the power of two that bounds it (1, 2, 4, ...)."""
    queue_wait_total_s: float = 0.0
    queue_wait_max_s: float = 0.0
    """Time from submit to dispatch, summed over requests, and its maximum."""
    slot_waits: int = 0
    """Batches whose wait was over but that stayed open until a slot freed."""
    overloaded: int = 0
    deadline_exceeded: int = 0
    failed_batches: int = 0
    """Merged calls that raised (or whose outputs had no row per input), re-run request by request."""
    errors: int = 0
    """Requests answered with the model's exception."""

    def count_dispatch(self, reason: str, rows: int) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        self.batches += 1
        self.rows += rows
        self.max_batch_rows = max(self.max_batch_rows, rows)
        bucket = 1 << (rows - 1).bit_length()
        self.batch_rows_histogram[bucket] = self.batch_rows_histogram.get(bucket, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy (histogram keys as strings)."""
        data = asdict(self)
        data["batch_rows_histogram"] = {str(k): v for k, v in sorted(self.batch_rows_histogram.items())}
        return data
