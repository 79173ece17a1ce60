"""Errors the client raises: the server's own classes, rebuilt from its answers.

A bad request is rejected before any network call by the validation the
server runs (``mly.common.request``), so it raises the very class and message
the server would answer with. An error the server did answer is rebuilt from
its status and body (``{"status":"error","error":...}``, or a Go server's plain
text) into the same ``mly.errors`` class; ``status`` is the HTTP status and
``message`` the server's text. Three classes are the client's own:

    MlyError
    ├── RequestError (400) ... NotFoundError, OverloadedError, ...   (mly.errors)
    ├── TransportError (503)        no host answered after every retry
    │   └── NoHostAvailableError    every host is marked down (backoff not over)
    └── ProtocolError (502)         an answer that is not the mly/Go wire format
"""

from __future__ import annotations

import re

import orjson

from mly.errors import (
    BatchTooLargeError,
    EvaluationError,
    InputError,
    MissingFieldError,
    MlyError,
    ModelNotReadyError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RequestError,
    UnknownFieldError,
)

__all__ = [
    "BatchTooLargeError",
    "EvaluationError",
    "InputError",
    "MissingFieldError",
    "MlyError",
    "ModelNotReadyError",
    "NoHostAvailableError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "ProtocolError",
    "RequestError",
    "TransportError",
    "UnknownFieldError",
    "error_from_response",
]


class TransportError(MlyError):
    """No host answered (refused, reset, timed out) within the allowed attempts."""

    status = 503


class NoHostAvailableError(TransportError):
    """Every host is marked down and none is due for a probe yet."""


class ProtocolError(MlyError):
    """The server answered, but not in the eval/meta wire format."""

    status = 502


_BY_STATUS: dict[int, type[MlyError]] = {
    400: RequestError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    429: OverloadedError,
    503: ModelNotReadyError,
    500: EvaluationError,
}
_UNKNOWN = re.compile(r"unknown field: '([^']*)'")
_MISSING = "missing fields: "
_INPUT = re.compile(r"^([A-Za-z_][\w.-]*)(?:\[(\d+)\])?: ")


def _message_of(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()  # a Go server's text/plain error
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return body.decode("utf-8", "replace").strip()


def _bare(cls: type[MlyError], message: str, status: int) -> MlyError:
    """An instance of ``cls`` carrying the server's message as is (their __init__ formats theirs)."""
    exc = cls.__new__(cls)
    MlyError.__init__(exc, message)
    exc.status = status
    return exc


def error_from_response(status: int, body: bytes) -> MlyError:
    """The ``mly.errors`` class of an error answer, with ``status`` and the server's ``message``.

    A 400 is narrowed by its text to ``UnknownFieldError``, ``MissingFieldError``
    or ``InputError`` with ``field`` (and ``row``) filled in, so callers can react
    to the field at fault whichever side rejected the request; a 413 about
    ``batch_size`` (the server's row limit) is a ``BatchTooLargeError``.
    """
    message = _message_of(body) or f"HTTP {status}"
    if status == 413 and message.startswith("batch_size:"):
        too_many = _bare(BatchTooLargeError, message, status)
        too_many.field = "batch_size"
        return too_many
    if status == 400:
        unknown = _UNKNOWN.search(message)
        if unknown:
            exc = _bare(UnknownFieldError, message, status)
            exc.field = unknown.group(1)
            return exc
        if message.startswith(_MISSING):
            missing = _bare(MissingFieldError, message, status)
            names = [n.strip() for n in message[len(_MISSING):].split(",") if n.strip()]
            missing.fields = names  # type: ignore[attr-defined]
            missing.field = names[0] if names else None
            return missing
        field = _INPUT.match(message)
        if field:
            exc = _bare(InputError, message, status)
            exc.field = field.group(1)
            exc.row = int(field.group(2)) if field.group(2) else None  # type: ignore[attr-defined]
            return exc
    cls = _BY_STATUS.get(status, RequestError if 400 <= status < 500 else MlyError)
    return _bare(cls, message, status)
