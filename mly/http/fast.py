"""The eval endpoint as a plain ASGI handler in front of Starlette.

Eval is the one hot route. Going through Starlette's middleware stack, router,
``Request`` and ``Response`` objects cost about as much as everything mly does
for a cached answer, so eval requests are answered here directly and every
other path (meta, health, config, 404/405) falls through to the Starlette app.
Errors have the same JSON shape as every other route (``responses.error_body``).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from mly.common.request import parse_body, parse_query
from mly.common.wire import STATUS_OK
from mly.errors import MlyError, PayloadTooLargeError
from mly.http.responses import error_body
from mly.service.registry import ModelRegistry

__all__ = ["EvalFastPath"]

log = logging.getLogger("mly.http")

_PREFIX = "/v1/api/model/"
_SUFFIX = "/eval"
_METHODS = frozenset({"GET", "POST", "PUT"})  # PUT is POST, as in Go
_JSON_HEADERS = [(b"content-type", b"application/json")]


class MethodNotAllowedError(MlyError):
    status = 405


class EvalFastPath:
    def __init__(self, app: Any, registry: ModelRegistry, *, buffer_size: int, max_batch_size: int) -> None:
        self.app: ASGIApp = app
        self.state = app.state  # the wrapped Starlette app's state (``state.registry``)
        self.registry = registry
        self.buffer_size = buffer_size
        self.max_batch_size = max_batch_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        model_id = path[len(_PREFIX) : -len(_SUFFIX)] if path.startswith(_PREFIX) and path.endswith(_SUFFIX) else ""
        if not model_id or "/" in model_id:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter_ns()
        try:
            if scope["method"] not in _METHODS:
                raise MethodNotAllowedError(f"method {scope['method']} not allowed on {path}: use GET, POST, PUT")
            body = await self._evaluate(model_id, scope, receive, started)
            status = 200
        except MlyError as exc:
            if exc.status >= 500:
                log.warning("%s %s -> %d: %s", scope["method"], path, exc.status, exc)
            status, body = exc.status, error_body(str(exc))
        except Exception as exc:
            log.exception("%s %s failed", scope["method"], path)
            status = 500
            body = error_body(f"internal error: {type(exc).__name__}")
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if status == 405:
            headers.append((b"allow", b"GET, POST, PUT"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _evaluate(self, model_id: str, scope: Scope, receive: Receive, started: int) -> bytes:
        service = self.registry.get(model_id)
        if scope["method"] == "GET":
            query = scope.get("query_string", b"").decode("latin-1")
            request = parse_query(parse_qsl(query, keep_blank_values=True), service.current.interface.dtypes)
        else:
            request = parse_body(await self._read_body(scope, receive), max_batch_size=self.max_batch_size)
        result = await service.evaluate(request)
        out: dict[str, Any] = {"status": STATUS_OK}
        if result.dict_hash:
            out["dictHash"] = result.dict_hash
        out["serviceTimeMcs"] = (time.perf_counter_ns() - started) // 1000
        out["data"] = result.rows if result.batch else result.rows[0]
        return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """At most ``buffer_size`` bytes; larger is a 413 before it is all buffered."""
        limit = self.buffer_size
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise PayloadTooLargeError(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise MlyError("client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
