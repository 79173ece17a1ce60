"""The Go client's message API (``NewMessage``, ``StringKey``, ``IntsKey``...) over ``predict``.

A message only collects values; they are checked when it is run, by the same
validation ``predict`` (and the server) uses. Unlike Go's pooled messages, a
``Message`` may be kept and run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mly.common.request import EvalRequest
from mly.errors import InputError, RequestError

__all__ = ["Message"]


class Message:
    """Inputs for one predict: single-row (``*_key``) or batch (``set_batch_size`` + ``*s_key``)."""

    __slots__ = ("_batch_size", "_values")

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._batch_size = 0

    @property
    def batch_size(self) -> int:
        """0 for a single-row message."""
        return self._batch_size

    def set_batch_size(self, n: int) -> Message:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError("batch_size", f"must be a positive integer, got {n!r}")
        if self._values and not self._batch_size:
            raise RequestError("set_batch_size: the message already holds single-row values")
        self._batch_size = n
        return self

    def _single(self, name: str, value: Any) -> Message:
        if self._batch_size:
            raise InputError(name, "a single value in a batch message: use the plural method (e.g. strings_key)")
        self._values[name] = value
        return self

    def _many(self, name: str, values: Sequence[Any]) -> Message:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise InputError(name, f"expected a list of values, got {type(values).__name__}")
        if not self._batch_size:
            if self._values:
                raise InputError(name, "a list in a single-row message: call set_batch_size first")
            self._batch_size = len(values)  # as Go: the first list sets the batch size
        self._values[name] = list(values)
        return self

    def key(self, name: str, value: Any) -> Message:
        """One row's value of any input type (bool inputs included, which Go cannot set)."""
        return self._single(name, value)

    def string_key(self, name: str, value: str) -> Message:
        return self._single(name, value)

    def int_key(self, name: str, value: int) -> Message:
        return self._single(name, value)

    def float_key(self, name: str, value: float) -> Message:
        return self._single(name, value)

    def keys(self, name: str, values: Sequence[Any]) -> Message:
        """Every row's value of one input; a list of one value is used for every row."""
        return self._many(name, values)

    def strings_key(self, name: str, values: Sequence[str]) -> Message:
        return self._many(name, values)

    def ints_key(self, name: str, values: Sequence[int]) -> Message:
        return self._many(name, values)

    def floats_key(self, name: str, values: Sequence[float]) -> Message:
        return self._many(name, values)

    def request(self) -> EvalRequest:
        """The request this message describes (validated when run)."""
        return EvalRequest(dict(self._values), self._batch_size)

    def __repr__(self) -> str:
        return f"Message(batch_size={self._batch_size}, values={self._values!r})"
