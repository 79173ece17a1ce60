"""Server-side batching: merge concurrent requests' rows into one model call.

Knows nothing of HTTP, keys, caches or TensorFlow: a ``Batcher`` is handed a
blocking ``run(feeds) -> outputs`` callable and the executor to call it in.
"""

from __future__ import annotations

from mly.batching.batcher import Batcher, RunFunction
from mly.batching.counters import BatcherCounters
from mly.batching.policy import AdaptiveWait, FixedWait, WaitPolicy, make_policy
from mly.batching.settings import BatchSettings, settings_for

__all__ = [
    "AdaptiveWait",
    "BatchSettings",
    "Batcher",
    "BatcherCounters",
    "FixedWait",
    "RunFunction",
    "WaitPolicy",
    "make_policy",
    "settings_for",
]
