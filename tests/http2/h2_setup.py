"""Limits and config of the HTTP/2 test servers (small, so the tests reach them quickly)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from mly.http.h2engine import ENGINE_ENV, native_available

#: The HTTP/2 engines the tests run against: both when the native one is built, or the one
#: ``MLY_HTTP2_ENGINE`` names. In CI the native one must have been built.
if os.environ.get(ENGINE_ENV):
    ENGINES = [os.environ[ENGINE_ENV]]
elif native_available() or os.environ.get("CI"):
    ENGINES = ["h2", "nghttp2"]
else:
    ENGINES = ["h2"]

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


@contextlib.contextmanager
def engine_env(engine: str) -> Iterator[None]:
    """Servers built inside serve HTTP/2 with ``engine`` (it is chosen when the server is made)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENGINE_ENV, engine)
        yield


def h2_connections(server: Any) -> list[Any]:
    """The server's HTTP/2 connections, whichever engine serves them."""
    from mly.http.h2 import H2Protocol

    kinds: tuple[type, ...] = (H2Protocol,)
    if native_available():
        from mly.http.h2native import NativeH2Protocol

        kinds += (NativeH2Protocol,)
    return [c for c in server._server.server_state.connections if isinstance(c, kinds)]
