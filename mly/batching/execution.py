"""What runs in the executor thread for one dispatched batch: merge, call, split.

Kept apart from ``batcher.py`` (which owns the event-loop side: joining, timers,
slots, deadlines) because nothing here touches the loop; it works on plain
``(feeds, rows)`` pairs and returns one result per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mly.batching.deferred import build_each, build_together

__all__ = ["BatchResult", "Outputs", "RunFunction", "execute_batch"]

Outputs = Mapping[str, np.ndarray]
RunFunction = Callable[[dict[str, np.ndarray]], Outputs]
"""Blocking model call: equal-length 1-D feed columns in, outputs with rows first out."""

BatchResult = tuple[list[Any], list[tuple[int, float]], bool]
"""Per-request outputs (or the exception for that request), ``(rows, seconds)`` per model
call, and whether a merged call failed and was re-run request by request."""


def execute_batch(run: RunFunction, requests: Sequence[tuple[Mapping[str, np.ndarray], int]]) -> BatchResult:
    """Run one batch of ``(feeds, rows)`` requests in as few model calls as their feeds allow.

    Deferred rows are built together first. Otherwise (or when that fails) every
    request's own columns are concatenated into one call; a request whose row cannot be
    built gets its input error, and a merged call that raises is re-run request by
    request, so only the request with bad input gets the error.
    """
    timings: list[tuple[int, float]] = []
    counts = [rows for _, rows in requests]
    failed = False
    merged = build_together([feeds for feeds, _ in requests]) if len(requests) > 1 else None
    if merged is not None:
        split = _call_merged(run, merged, counts, timings)
        if split is not None:
            return split, timings, False
        failed = True
    # Each request's own columns; a row that cannot be built keeps its input error as its result.
    results: list[Any] = [build_each(feeds) for feeds, _ in requests]
    live = [i for i, feeds in enumerate(results) if not isinstance(feeds, BaseException)]
    if len(live) > 1 and not failed:
        concatenated = _concatenate([results[i] for i in live])
        if concatenated is not None:
            split = _call_merged(run, concatenated, [counts[i] for i in live], timings)
            if split is not None:
                for i, rows in zip(live, split):
                    results[i] = rows
                return results, timings, False
            failed = True
    for i in live:
        results[i] = _call(run, results[i], counts[i], timings)
    return results, timings, failed


def _concatenate(feeds: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    """One column per input over every request, or ``None`` when their feeds differ in names or dtypes."""
    first = feeds[0]
    try:
        if all(_same_feeds(first, other) for other in feeds[1:]):
            return {name: np.concatenate([f[name] for f in feeds]) for name in first}
    except Exception:
        pass
    return None


def _call_merged(
    run: RunFunction, feeds: Mapping[str, np.ndarray], counts: Sequence[int], timings: list[tuple[int, float]]
) -> list[Any] | None:
    """Each request's outputs from one call over merged feeds, or ``None`` when the call raised
    or its outputs have no row per input (the caller then runs the requests one by one)."""
    total = sum(counts)
    outputs = _call(run, feeds, total, timings)
    if isinstance(outputs, BaseException):
        return None
    try:
        return _split(outputs, counts, total)
    except (TypeError, ValueError):
        return None


def _call(run: RunFunction, feeds: Mapping[str, np.ndarray], rows: int, timings: list[tuple[int, float]]) -> Any:
    started = time.perf_counter()
    try:
        outputs = run(feeds if isinstance(feeds, dict) else dict(feeds))
    except Exception as exc:
        return exc
    timings.append((rows, time.perf_counter() - started))
    return outputs


def _same_feeds(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[name].dtype == b[name].dtype for name in a)


def _split(outputs: Mapping[str, np.ndarray], counts: Sequence[int], total: int) -> list[Any]:
    """Each request's rows of every output (views, no copies)."""
    for name, value in outputs.items():
        if len(value) != total:
            raise ValueError(f"output {name!r} has {len(value)} rows for {total} inputs")
    results: list[Any] = []
    offset = 0
    for rows in counts:
        end = offset + rows
        results.append({name: value[offset:end] for name, value in outputs.items()})
        offset = end
    return results
