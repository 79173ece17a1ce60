"""The operations one served model records, named as the Go server names them."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence

from mly.metrics.histogram import GO_IDLETIME_BUCKETS_NS, LATENCY_BUCKETS_S, Histogram
from mly.metrics.operation import Operation

__all__ = ["PERF_KEYS", "ModelMetrics"]

#: ``{id}Perf`` outcome values, in Go's order.
PERF_KEYS = ("error", "eval", "pending", "timeout", "invalid", "canceled", "deadlineExceeded", "overloaded")
_CONTEXT_KEYS = ("error", "canceled", "deadlineExceeded")
LOCATION = "mly/service"


class ModelMetrics:
    """Recorded by the HTTP layer (Perf, HTTPOverhead, meta), the batcher (Eval) and the model
    lifecycle (Reload). Operations that Go records but mly derives from other counters
    (HTTPHandler from Perf; Dispatcher, BatcherQueue, Semaphore, the datastores) are built at
    read time, so a request pays for as few records as possible."""

    def __init__(self, model_id: str, idletime_buckets_ns: Sequence[float] = GO_IDLETIME_BUCKETS_NS) -> None:
        def op(suffix: str, description: str, keys: tuple[str, ...], buckets: int = 2, timed: bool = False) -> Operation:
            return Operation(f"{model_id}{suffix}", f"{model_id} {description}", keys, location=LOCATION,
                             recent_buckets=buckets, histogram=LATENCY_BUCKETS_S if timed else None)

        self.perf = op("Perf", "service performance", PERF_KEYS, timed=True)
        self.eval = op("Eval", "TensorFlow calls", ("error", "running"), timed=True)
        self.reload = op("Reload", "model reloads", _CONTEXT_KEYS, 1)
        self.http_overhead = op("HTTPOverhead", "request body read and decode", ("readError", "unmarshalError"))
        self.meta_handler = op("MetaHandler", "meta requests", ("error", "http404", "dict", "cfg"), 1)
        self.dict_meta = op("DictMeta", "meta/dictionary requests", ("error",), 1, timed=True)
        self.cfg_meta = op("CfgMeta", "meta/config requests", ("error",), 1, timed=True)
        self.idletime = Histogram(idletime_buckets_ns)
        """Go's ``mly_model_idletime``: ns from the previous eval request to this one."""
        self.last_request_ns = time.perf_counter_ns()

    def request_started(self, now_ns: int) -> None:
        idle = now_ns - self.last_request_ns
        self.last_request_ns = now_ns
        h = self.idletime
        h.counts[bisect_left(h.bounds, idle)] += 1
        h.sum += idle
