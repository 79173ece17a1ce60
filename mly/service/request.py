"""Eval requests: body or query -> validated, typed columns.

The whole JSON object is parsed before anything is interpreted, so key order
does not matter (Go needs ``batch_size`` first). Processing stops at the first
error, and every error names the field at fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mly._native.encode import encode_column
from mly.common.wire import BATCH_SIZE, CACHE_KEY
from mly.errors import InputError, MissingFieldError, RequestError, UnknownFieldError
from mly.service.generation import Generation

__all__ = ["EvalRequest", "check_names", "encode_request", "has_exact_names", "parse_body", "parse_query"]

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


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


def parse_body(body: bytes) -> EvalRequest:
    if not body.strip():
        raise RequestError("empty request body: expected a JSON object of inputs")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(f"request body must be a JSON object, got {type(data).__name__}")
    batch_size = data.pop(BATCH_SIZE, 0)
    data.pop(CACHE_KEY, None)  # accepted for Go clients, never trusted (decisions.md #1)
    if batch_size is None:
        batch_size = 0
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise InputError(BATCH_SIZE, f"must be a non-negative integer, got {batch_size!r}")
    return EvalRequest(data, batch_size)


def _parse_text(name: str, dtype: str, text: str) -> Any:
    try:
        if dtype == "string":
            return text
        if dtype in ("int64", "int32"):
            return int(text)
        if dtype in ("float32", "float64"):
            return float(text)
    except ValueError:
        kind = "an integer" if dtype.startswith("int") else "a number"
        raise InputError(name, f"expected {kind}, got {text!r}") from None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(name, f"expected true or false, got {text!r}")


def parse_query(params: Iterable[tuple[str, str]], generation: Generation) -> EvalRequest:
    """GET is always one row; repeated keys keep the first value (as Go does)."""
    dtypes = generation.interface.dtypes
    values: dict[str, Any] = {}
    for key, text in params:
        if key in (BATCH_SIZE, CACHE_KEY) or key in values:
            continue
        if key not in dtypes:
            raise UnknownFieldError(key, list(dtypes))
        values[key] = _parse_text(key, dtypes[key], text)
    return EvalRequest(values)


def has_exact_names(request: EvalRequest, generation: Generation) -> bool:
    """Exactly the model's inputs, no more, no fewer."""
    dtypes = generation.interface.dtypes
    values = request.values
    return len(values) == len(dtypes) and all(name in dtypes for name in values)


def check_names(request: EvalRequest, generation: Generation) -> None:
    """Raise the error that names the first unknown or the missing inputs."""
    if has_exact_names(request, generation):
        return
    dtypes = generation.interface.dtypes
    for key in request.values:
        if key not in dtypes:
            raise UnknownFieldError(key, list(dtypes))
    raise MissingFieldError([name for name in dtypes if name not in request.values])


def encode_request(request: EvalRequest, generation: Generation) -> dict[str, np.ndarray]:
    """Check names, then encode every input into a 1-D column of ``request.rows`` values."""
    check_names(request, generation)
    values = request.values
    rows, batch = request.rows, request.batch
    return {
        name: encode_column(name, code, values[name], rows, batch, precision)
        for name, code, precision in generation.encoders
    }
