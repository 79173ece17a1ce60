"""Go's start-up self-test: one eval request per model with a ``Test`` block, before serving.

``Test: {Test: true}`` sends generated values (strings ``test-<n>``, random ints and
floats, as Go does); ``Single`` gives values for some or all inputs (the rest are
generated); ``SingleBatch: true`` sends the single row as a one-row batch too;
``Batch`` gives arrays for a batch request (shorter ones are generated to match).
The request goes through the whole eval path (parsing, cache, batcher, TensorFlow,
transformer, serialisation), in-process, so a model that cannot answer stops the
start instead of serving errors.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from mly.config.load import parse_test_block
from mly.config.schema import ModelConfig

__all__ = ["STARTUP_ERROR_FILE_ENV", "SelfTestError", "report_startup_failure", "run_self_test", "self_test_bodies"]

#: Set by ``mly-fast serve --workers``: where a worker reports why it could not start.
STARTUP_ERROR_FILE_ENV = "MLY_STARTUP_ERROR_FILE"

log = logging.getLogger("mly.selftest")

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


def report_startup_failure(reason: str) -> bool:
    """In a ``--workers`` worker: write why it could not start and stop the supervisor.

    uvicorn's supervisor replaces a worker that died, so one that can never start
    would be started again and again; the supervisor stops every worker instead,
    and ``mly-fast serve`` prints ``reason`` and exits 3. ``False`` outside a worker.
    """
    error_file = os.environ.get(STARTUP_ERROR_FILE_ENV)
    if not error_file:
        return False
    try:
        with open(error_file, "w", encoding="utf-8") as f:
            f.write(reason)
    except OSError:  # the supervisor must stop all the same (it then gives a reason of its own)
        log.error("%s", reason)
    os.kill(os.getppid(), signal.SIGTERM)
    return True


class SelfTestError(Exception):
    """A model failed its start-up self-test; the message names the model."""


def _generated(dtype: str, rng: random.Random) -> Any:
    if dtype == "string":
        return f"test-{rng.randrange(1 << 31)}"
    if dtype in ("int64", "int32"):
        return rng.randrange(1 << 31)
    if dtype in ("float32", "float64"):
        return rng.random()
    return rng.random() < 0.5


def self_test_bodies(model: ModelConfig, dtypes: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """``(label, JSON body)`` of every request the model's ``Test`` block asks for."""
    settings = parse_test_block(model.test, f"Models[{model.id}]")
    if not any(settings.get(k) for k in ("Test", "Single", "SingleBatch", "Batch")):
        return []
    rng = random.Random(model.id)
    single = dict(settings.get("Single") or {})
    for name in single:
        if name not in dtypes:
            raise SelfTestError(f"model {model.id!r}: Test.Single names {name!r}, which is not an input")
    row = {name: single[name] if name in single else _generated(dtype, rng) for name, dtype in dtypes.items()}
    bodies = [("single row", orjson.dumps(row))]
    if settings.get("SingleBatch"):
        bodies.append(("single row as a batch", orjson.dumps({"batch_size": 1, **{k: [v] for k, v in row.items()}})))
    batch = dict(settings.get("Batch") or {})
    if batch:
        for name in batch:
            if name not in dtypes:
                raise SelfTestError(f"model {model.id!r}: Test.Batch names {name!r}, which is not an input")
        size = max(len(v) for v in batch.values())
        columns = {
            name: batch[name] if name in batch else [_generated(dtype, rng) for _ in range(size)]
            for name, dtype in dtypes.items()
        }
        bodies.append(("batch", orjson.dumps({"batch_size": size, **columns})))
    return bodies


async def _post(app: ASGIApp, model_id: str, body: bytes) -> tuple[int, bytes]:
    """One eval request through the ASGI app, in-process."""
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    path = f"/v1/api/model/{model_id}/eval"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    await app(scope, receive, send)
    return status, b"".join(chunks)


async def run_self_test(app: ASGIApp, model_id: str, bodies: list[tuple[str, bytes]]) -> None:
    """Send each body to the app's eval route; raise ``SelfTestError`` unless every answer is a success."""
    for label, body in bodies:
        status, answer = await _post(app, model_id, body)
        try:
            reply = orjson.loads(answer)
        except orjson.JSONDecodeError:
            reply = {}
        if status != 200 or not isinstance(reply, dict) or reply.get("status") != "ok" or "data" not in reply:
            reason = (reply.get("error") if isinstance(reply, dict) else None) or answer[:200].decode(errors="replace")
            raise SelfTestError(f"model {model_id!r}: self-test ({label}) failed with status {status}: {reason or 'no answer'}")
