"""The operations one served model records, named as the Go server names them."""

from __future__ import annotations

from mly.metrics.operation import Operation

__all__ = ["PERF_KEYS", "ModelMetrics"]

#: ``{id}Perf`` outcome values, in Go's order.
PERF_KEYS = ("error", "eval", "pending", "timeout", "invalid", "canceled", "deadlineExceeded", "overloaded")
_CONTEXT_KEYS = ("error", "canceled", "deadlineExceeded")
LOCATION = "mly/service"


class ModelMetrics:
    """Recorded by the HTTP layer (Perf, HTTPOverhead, HTTPHandler, meta), the batcher (Eval)
    and the model lifecycle (Reload). Operations that Go records but mly derives from other
    counters (Dispatcher, BatcherQueue, Semaphore, the datastores) are built at read time."""

    def __init__(self, model_id: str) -> None:
        def op(suffix: str, description: str, keys: tuple[str, ...], buckets: int = 2) -> Operation:
            return Operation(f"{model_id}{suffix}", f"{model_id} {description}", keys, location=LOCATION,
                             recent_buckets=buckets)

        self.perf = op("Perf", "service performance", PERF_KEYS)
        self.eval = op("Eval", "TensorFlow calls", ("error", "running"))
        self.reload = op("Reload", "model reloads", _CONTEXT_KEYS, 1)
        self.http_overhead = op("HTTPOverhead", "request body read and decode", ("readError", "unmarshalError"))
        self.http_handler = op("HTTPHandler", "eval handler", _CONTEXT_KEYS)
        self.meta_handler = op("MetaHandler", "meta requests", ("error", "http404", "dict", "cfg"), 1)
        self.dict_meta = op("DictMeta", "meta/dictionary requests", ("error",), 1)
        self.cfg_meta = op("CfgMeta", "meta/config requests", ("error",), 1)
