"""Limits and config of the HTTP/2 test servers (small, so the tests reach them quickly)."""

from __future__ import annotations

from typing import Any

#: Small limits so the tests reach them quickly.
MAX_STREAMS = 16
STREAM_WINDOW = 65535
WRITE_TIMEOUT_MS = 1500
IDLE_TIMEOUT_MS = 1500
BUFFER_SIZE = 256 * 1024
MAX_IN_FLIGHT = 4

#: A row of the Keras lookup model and what it answers.
ROW = {"sa": "a", "sl": "b", "i1": 1, "fl": 0.5}


def h2_config(model_dirs: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "Endpoint": {"Port": 0, "BufferSize": BUFFER_SIZE, "MaxBatchSize": 100000,
                     "HTTP2MaxConcurrentStreams": MAX_STREAMS, "HTTP2StreamWindow": STREAM_WINDOW,
                     "HTTP2ConnectionWindow": STREAM_WINDOW, "WriteTimeoutMs": WRITE_TIMEOUT_MS,
                     "IdleTimeoutMs": IDLE_TIMEOUT_MS, "StreamMaxInFlight": MAX_IN_FLIGHT},
        "Models": [{"ID": "sli", "URL": model_dirs["keras"], "DataStore": "mem",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 8}}],
        **extra,
    }
