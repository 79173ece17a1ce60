"""Single-row requests whose feed columns are built together with the rest of their batch.

Encoded on its own, a one-row request becomes a 1-value array per input, and its batch
then concatenates them: for 23 requests to an 8-input model that is 184 small arrays and
8 concatenations, several microseconds per request. Built together, it is 8 arrays. The
batcher sees only a builder, so it still knows nothing of how values become columns.

A builder that fails on the whole batch (one request sent a bad value) is retried row by
row: each bad request gets its own error, exactly the one it would get alone, and the
others are evaluated as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mly.errors import RequestError

__all__ = ["DeferredRow", "RowBuilder", "build_each", "build_together"]

RowBuilder = Callable[[Sequence[Mapping[str, Any]]], dict[str, np.ndarray]]
"""Rows' values -> one column per feed with a value per row. Raises a ``RequestError``
for a bad value; for a single row, the one encoding that request alone raises."""


class DeferredRow(Mapping[str, np.ndarray]):
    """One request's row (input name -> JSON value) and the builder of its generation.

    As a mapping it is the request's own columns, built on first read (a custom
    transformer reading its inputs); the batcher never reads it that way.
    """

    __slots__ = ("build", "columns", "row")

    def __init__(self, row: Mapping[str, Any], build: RowBuilder) -> None:
        self.row = row
        self.build = build
        self.columns: dict[str, np.ndarray] | None = None

    def own_columns(self) -> dict[str, np.ndarray]:
        if self.columns is None:
            self.columns = self.build([self.row])
        return self.columns

    def __getitem__(self, name: str) -> np.ndarray:
        return self.own_columns()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.own_columns())

    def __len__(self) -> int:
        return len(self.own_columns())


def build_together(feeds: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    """Every request's columns in one build, or ``None`` when they cannot be built together:
    a request that brought its own columns, rows of different builders, or a bad value
    somewhere (``build_each`` then says whose)."""
    first = feeds[0]
    if type(first) is not DeferredRow:
        return None
    build = first.build
    rows: list[Mapping[str, Any]] = []
    for item in feeds:
        if type(item) is not DeferredRow or item.build is not build:
            return None
        rows.append(item.row)
    try:
        return build(rows)
    except RequestError:
        return None


def build_each(feeds: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray] | RequestError:
    """A request's own columns: its feeds, or its deferred row built alone (or the error that says why not)."""
    if type(feeds) is not DeferredRow:
        return feeds
    try:
        return feeds.own_columns()
    except RequestError as exc:
        return exc
