"""What ``predict`` returns, and typed results (the Go client's ``Response{Data: &T{}}``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Response", "row_converter"]


@dataclass(slots=True)
class Response:
    status: str
    """``"ok"`` when the server was asked (for some rows at least), ``"cached"`` when
    every row was answered by the client's own cache tiers."""
    data: Any
    """One row (a dict, or an ``into`` instance) for a single-row predict; a list of
    them, in the caller's order, for a batch."""
    dict_hash: int
    """The dictionary hash the answer was computed under (0: the model has none)."""
    service_time: float
    """Seconds the server spent (its ``serviceTimeMcs``); 0.0 when nothing was sent."""
    cached_rows: int = 0
    """Rows answered from the client's cache tiers without asking the server."""


def _identity(row: Any) -> Any:
    return row


@functools.lru_cache(maxsize=256)
def row_converter(into: type | None) -> Callable[[Any], Any]:
    """Row dict -> ``into``: a dataclass gets the outputs named by its fields (others
    are ignored, as Go's JSON decoding ignores them); any other class is called
    with every output as a keyword (NamedTuple, pydantic, a plain ``__init__``)."""
    if into is None or into is dict:
        return _identity
    if not isinstance(into, type):
        raise TypeError(f"into: expected a class, got {into!r}")
    if dataclasses.is_dataclass(into):
        names = frozenset(f.name for f in dataclasses.fields(into) if f.init)

        def to_dataclass(row: Any) -> Any:
            try:
                return into(**{k: v for k, v in row.items() if k in names})
            except (TypeError, AttributeError) as exc:
                raise TypeError(f"into={into.__name__}: cannot build it from outputs {list(row)}: {exc}") from None

        return to_dataclass

    def to_class(row: Any) -> Any:
        try:
            return into(**row)
        except TypeError as exc:
            raise TypeError(f"into={into.__name__}: cannot build it from outputs {list(row)}: {exc}") from None

    return to_class
