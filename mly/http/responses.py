"""orjson responses and the one place errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mly.common.wire import STATUS_ERROR
from mly.errors import MlyError

__all__ = ["JSONResponse", "error_body", "error_response", "exception_handlers"]

log = logging.getLogger("mly.http")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(message: str) -> bytes:
    """The one error shape (docs/differences-from-go.md #4), for Starlette routes and the eval fast path."""
    return orjson.dumps({"status": STATUS_ERROR, "error": message})


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(error_body(message), status_code=status, media_type="application/json", headers=headers)


async def _mly_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MlyError)
    if exc.status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc)
    return error_response(exc.status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        message = f"no such path: {path}"
    elif exc.status_code == 405:
        allowed = sorted((exc.headers or {}).get("Allow", "GET").split(", "))
        message = f"method {request.method} not allowed on {path}: use {', '.join(allowed)}"
    else:
        message = exc.detail
    return error_response(exc.status_code, message, exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


exception_handlers = {
    MlyError: _mly_error,
    HTTPException: _http_error,
    Exception: _internal_error,
}
