"""Full-duplex streaming eval: ``PUT /v1/api/model/{id}/eval`` with ``Content-Type: application/x-ndjson``.

The request body is a stream of eval requests, one JSON object per line (the
same shapes as a POST body). The answer is a stream of JSON lines, one per
request line, each written as soon as its result is ready, so answers come in
completion order, not request order. Each answer carries ``index``: the
position of its request among the body's non-blank lines, counted from 0.

    {"index":0,"status":"ok","dictHash":...,"serviceTimeMcs":...,"data":{...}}
    {"index":1,"status":"error","code":400,"error":"malformed JSON body: ..."}

A bad line gets an error line (``code`` is the HTTP status the same request
would get on its own) and the stream goes on. Lines are evaluated through the
same ``ModelService.evaluate`` as single requests, so the cache, single-flight
and the batcher serve them (lines in flight together batch together).

Limits: a line longer than ``Endpoint.BufferSize`` is an error line (its bytes
are skipped, not buffered); at most ``Endpoint.StreamMaxInFlight`` lines of one
stream are evaluated at once, and reading stops while that many are pending,
so a fast writer is held back by flow control (HTTP/2) or TCP (HTTP/1.1).
Works over HTTP/2 streams and HTTP/1.1 chunked bodies alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from mly.common.request import parse_body
from mly.common.wire import STATUS_ERROR, STATUS_OK
from mly.errors import MlyError
from mly.service.registry import ModelRegistry

__all__ = ["NDJSON", "is_ndjson", "stream_eval"]

log = logging.getLogger("mly.http")

NDJSON = b"application/x-ndjson"
_HEADERS = [(b"content-type", NDJSON), (b"cache-control", b"no-store")]


def is_ndjson(headers: list[tuple[bytes, bytes]]) -> bool:
    """``Content-Type: application/x-ndjson`` (parameters such as ``charset`` allowed)."""
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == NDJSON
    return False


async def stream_eval(registry: ModelRegistry, model_id: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one NDJSON stream; an unknown model is a plain JSON error before any line is read."""
    service = registry.get(model_id)  # NotFoundError -> the caller's JSON 404
    endpoint = registry.config.endpoint
    writer = _Writer(send)
    slots = asyncio.Semaphore(endpoint.stream_max_in_flight)
    pending: set[asyncio.Task[None]] = set()

    async def answer(index: int, line: bytes, started: int) -> None:
        try:
            try:
                request = parse_body(line, max_batch_size=endpoint.max_batch_size)
                result = await service.evaluate(request)
                out: dict[str, Any] = {"index": index, "status": STATUS_OK}
                if result.dict_hash:
                    out["dictHash"] = result.dict_hash
                out["serviceTimeMcs"] = (time.perf_counter_ns() - started) // 1000
                out["data"] = result.rows if result.batch else result.rows[0]
                await writer.line(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY))
            except MlyError as exc:
                if exc.status >= 500:
                    log.warning("eval stream %s line %d -> %d: %s", model_id, index, exc.status, exc)
                await writer.line(_error(index, exc.status, str(exc)))
            except Exception as exc:
                log.exception("eval stream %s line %d failed", model_id, index)
                await writer.line(_error(index, 500, f"internal error: {type(exc).__name__}"))
        finally:
            slots.release()

    async def start(index: int, line: bytes) -> None:
        await slots.acquire()
        task = asyncio.create_task(answer(index, line, time.perf_counter_ns()))
        pending.add(task)
        task.add_done_callback(pending.discard)

    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    limit = endpoint.buffer_size
    index = 0
    partial = bytearray()
    skipping = False  # inside a line that is already too long
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        more = bool(message.get("more_body", False))
        chunk: bytes = message.get("body", b"")
        if not more and chunk[-1:] != b"\n":
            chunk += b"\n"  # the last line need not end with a newline
        start_at = 0
        while (end := chunk.find(b"\n", start_at)) >= 0:
            piece = chunk[start_at:end]
            start_at = end + 1
            if skipping:
                skipping = False
                continue
            if partial:
                partial += piece
                line = bytes(partial)
                partial.clear()
            else:
                line = piece
            if len(line) > limit:
                await writer.line(_error(index, 413, f"line longer than Endpoint.BufferSize ({limit} bytes)"))
                index += 1
            elif line.strip():
                await start(index, line)
                index += 1
        rest = chunk[start_at:]
        if rest and not skipping:
            partial += rest
            if len(partial) > limit:
                await writer.line(_error(index, 413, f"line longer than Endpoint.BufferSize ({limit} bytes)"))
                index += 1
                partial.clear()
                skipping = True
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    await writer.close()


def _error(index: int, status: int, message: str) -> bytes:
    return orjson.dumps({"index": index, "status": STATUS_ERROR, "code": status, "error": message})


class _Writer:
    """One ``send`` at a time (ASGI forbids overlapping sends); lines go out as they are handed in."""

    __slots__ = ("lock", "send")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.lock = asyncio.Lock()

    async def line(self, data: bytes) -> None:
        async with self.lock:
            await self.send({"type": "http.response.body", "body": data + b"\n", "more_body": True})

    async def close(self) -> None:
        async with self.lock:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
