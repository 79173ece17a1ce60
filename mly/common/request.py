"""Eval requests: body or query -> validated, typed columns.

Shared by the server and the client, so a bad request gets the same message
whichever side rejects it. The whole JSON object is parsed before anything is
interpreted, so key order does not matter (Go needs ``batch_size`` first).
Processing stops at the first error, and every error names the field at fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mly._native import encode as _encode
from mly.common.wire import BATCH_SIZE, CACHE_KEY
from mly.errors import BatchTooLargeError, InputError, MissingFieldError, RequestError, UnknownFieldError

__all__ = [
    "DTYPE_CODES",
    "Encoder",
    "EvalRequest",
    "check_names",
    "encode_columns",
    "encode_rows",
    "encoders_for",
    "has_exact_names",
    "parse_body",
    "parse_query",
]

#: canonical dtype name -> the native encoder's dtype code.
DTYPE_CODES = {
    "string": _encode.DT_STRING,
    "int64": _encode.DT_INT64,
    "int32": _encode.DT_INT32,
    "float32": _encode.DT_FLOAT32,
    "float64": _encode.DT_FLOAT64,
    "bool": _encode.DT_BOOL,
}

Encoder = tuple[str, int, int]
"""``(input name, dtype code, precision)``: how one input is encoded into a column."""

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_INT_TEXT = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class EvalRequest:
    values: Mapping[str, Any]
    """Input name -> JSON scalar (single row) or list (batch)."""
    batch_size: int = 0
    """0 for a single-row request; otherwise the number of rows (``data`` is a list)."""

    @property
    def batch(self) -> bool:
        return self.batch_size > 0

    @property
    def rows(self) -> int:
        return self.batch_size or 1


def encoders_for(names: Iterable[str], dtypes: Mapping[str, str], precisions: Mapping[str, int]) -> tuple[Encoder, ...]:
    """One encoder per input, in the given order."""
    return tuple((name, DTYPE_CODES[dtypes[name]], precisions.get(name, 0)) for name in names)


def parse_body(body: bytes | bytearray, *, max_batch_size: int | None = None) -> EvalRequest:
    """Parse a JSON body; ``batch_size`` is checked against ``max_batch_size`` before
    anything proportional to it is allocated."""
    if not body.strip():
        raise RequestError("empty request body: expected a JSON object of inputs")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(f"request body must be a JSON object, got {type(data).__name__}")
    given = data.pop(BATCH_SIZE, None)
    data.pop(CACHE_KEY, None)  # accepted for Go clients, never trusted
    if given is None:
        return EvalRequest(data, 0)
    if isinstance(given, float) and max_batch_size is not None and given.is_integer() and given > max_batch_size:
        given = int(given)  # an integer literal past 64 bits arrives as a float: too large, not mistyped
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise InputError(BATCH_SIZE, f"must be a non-negative integer, got {given!r}")
    if max_batch_size is not None and given > max_batch_size:
        raise BatchTooLargeError(given, max_batch_size)
    if given == 0 and any(isinstance(v, list) for v in data.values()):
        raise InputError(BATCH_SIZE, "must be at least 1 when inputs are arrays, got 0")
    return EvalRequest(data, given)


def _parse_text(name: str, dtype: str, text: str) -> Any:
    """A query-string value as the JSON value it stands for; a text that is not one
    gets the same message a wrong-typed JSON value gets."""
    value: Any = None
    if dtype == "string":
        return text
    if dtype in ("int64", "int32"):
        value = int(text) if _INT_TEXT.fullmatch(text) else None
    elif dtype in ("float32", "float64"):
        if "_" not in text:
            try:
                value = float(text.strip())
            except ValueError:
                value = None
    elif text in _TRUE:
        value = True
    elif text in _FALSE:
        value = False
    if value is None:
        raise InputError(name, _encode.type_message(DTYPE_CODES[dtype], text))
    return value


def parse_query(params: Iterable[tuple[str, str]], dtypes: Mapping[str, str]) -> EvalRequest:
    """GET is always one row. ``batch_size`` and a key given twice are refused
    (Go ignores the one and keeps the first of the other): either is a caller's
    mistake that would otherwise be answered as if it were meant."""
    values: dict[str, Any] = {}
    for key, text in params:
        if key == CACHE_KEY:
            continue
        if key == BATCH_SIZE:
            raise InputError(BATCH_SIZE, "not accepted on GET, which evaluates one row: POST a JSON body for a batch")
        if key in values:
            raise InputError(key, "given more than once in the query string")
        if key not in dtypes:
            raise UnknownFieldError(key, list(dtypes))
        values[key] = _parse_text(key, dtypes[key], text)
    return EvalRequest(values)


def has_exact_names(values: Mapping[str, Any], dtypes: Mapping[str, str]) -> bool:
    """Exactly the model's inputs, no more, no fewer (a set comparison of the keys, done in C)."""
    return values.keys() == dtypes.keys()


def check_names(values: Mapping[str, Any], dtypes: Mapping[str, str]) -> None:
    """Raise the error that names the first unknown or the missing inputs."""
    if has_exact_names(values, dtypes):
        return
    for key in values:
        if key not in dtypes:
            raise UnknownFieldError(key, list(dtypes))
    raise MissingFieldError([name for name in dtypes if name not in values])


def encode_columns(
    request: EvalRequest, dtypes: Mapping[str, str], encoders: Sequence[Encoder], *, names_checked: bool = False
) -> dict[str, np.ndarray]:
    """Check names (unless the caller just found them exact), then encode every input into a
    1-D column of ``request.rows`` values."""
    values = request.values
    if not names_checked:
        check_names(values, dtypes)
    rows, batch = request.rows, request.batch
    return {
        name: _encode.encode_column(name, code, values[name], rows, batch, precision)
        for name, code, precision in encoders
    }


def encode_rows(rows: Sequence[Mapping[str, Any]], encoders: Sequence[Encoder]) -> dict[str, np.ndarray]:
    """Single-row requests' values (names already checked) -> one column per encoder, a value
    per request. One row is encoded exactly as its request alone; several are encoded as one
    batch, whose error (if any) names the batch's row, so a caller retries them one by one."""
    if len(rows) == 1:
        row = rows[0]
        return {
            name: _encode.encode_column(name, code, row[name], 1, False, precision)
            for name, code, precision in encoders
        }
    n = len(rows)
    return {
        name: _encode.encode_column(name, code, [row[name] for row in rows], n, True, precision)
        for name, code, precision in encoders
    }
