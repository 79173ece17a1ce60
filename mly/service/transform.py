"""Transformers: model outputs -> one JSON value per row.

A transformer sees a whole evaluated batch at once (not one row at a time as in
Go), which keeps the per-row cost to a dict build. Its result is both the
response's ``data`` item and what the cache stores, so it must depend only on
the keyed inputs and the model outputs.

Select one per model with ``Transformer: name`` in the config: a name given to
``@register_transformer`` or a ``package.module:function`` path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "TransformInput",
    "Transformer",
    "default_transformer",
    "register_transformer",
    "resolve_transformer",
]


@dataclass(frozen=True, slots=True)
class TransformInput:
    model_id: str
    rows: int
    inputs: Mapping[str, np.ndarray]
    """Every request input (auxiliary ones included) as a 1-D column of ``rows`` values."""
    outputs: Mapping[str, np.ndarray]
    """Model outputs by name; the first dimension is ``rows``."""
    output_names: Sequence[str]
    """Output names in response order (sorted)."""


Transformer = Callable[[TransformInput], Sequence[Any]]

_REGISTRY: dict[str, Transformer] = {}


def register_transformer(name: str) -> Callable[[Transformer], Transformer]:
    """Register a transformer under ``name`` for use as ``Transformer: name`` in config."""

    def decorate(fn: Transformer) -> Transformer:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"transformer {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorate


def _column(values: np.ndarray, rows: int) -> np.ndarray:
    """Per-row view: ``[rows]`` scalars, ``[rows, 1]`` -> scalars, wider -> lists.

    Go keeps only the first element of a wide output; mly returns all of them
    (docs/differences-from-go.md #8). numpy scalars are kept so float32 prints as float32.
    """
    if values.ndim == 0:
        return np.repeat(values, rows)
    if values.ndim >= 2 and values.shape[1:] == (1,) * (values.ndim - 1):
        return values.reshape(rows)
    return values


def default_transformer(data: TransformInput) -> list[dict[str, Any]]:
    """``{output name: value}`` per row, outputs in sorted name order."""
    names = list(data.output_names)
    columns = [_column(data.outputs[name], data.rows) for name in names]
    rows: list[dict[str, Any]] = []
    for i in range(data.rows):
        row: dict[str, Any] = {}
        for name, column in zip(names, columns):
            value = column[i]
            row[name] = value.tolist() if isinstance(value, np.ndarray) and value.dtype == object else value
        rows.append(row)
    return rows


def resolve_transformer(name: str) -> Transformer:
    """The transformer for a config value; ``ValueError`` names what was tried."""
    if not name:
        return default_transformer
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"transformer {name!r}: cannot import {module_name!r}: {exc}") from exc
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise ValueError(f"transformer {name!r}: {module_name} has no function {attr!r}")
        return fn  # type: ignore[no-any-return]
    known = ", ".join(sorted(_REGISTRY)) or "none registered"
    raise ValueError(f"unknown transformer {name!r} (registered: {known}; or use 'module:function')")
