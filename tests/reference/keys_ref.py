"""Pure-Python reference for ``mly._native.keys``: slow and obvious, used only by tests and bench.

It follows docs/architecture.md ("Native contracts") and the Go client rules
literally, one value at a time, so a disagreement with the
native code points at the native code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

SLOT_NONE = 0
SLOT_STRING_VOCAB = 1
SLOT_INT_VOCAB = 2
SLOT_WILDCARD = 3
SLOT_FLOAT = 4
OOV_STRING = "[UNK]"
OOV_INT = "[UNK]"  # Go keys an unknown int as "0", which a vocabulary may hold too
WILDCARD_DECIMALS = 10


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("/", "\\/")


def to_float32(x: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def go_round(y: float) -> float:
    """Go ``math.Round``: half away from zero, sign of zero kept, exact."""
    if not math.isfinite(y):
        return y
    t = float(math.trunc(y))
    if abs(y - t) >= 0.5:
        t += math.copysign(1.0, y)
    return math.copysign(t, y)


def go_format(x: float, decimals: int) -> str:
    """Go ``strconv.FormatFloat(x, 'f', decimals, _)``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return f"{x:.{decimals}f}"


def wildcard_float_text(x: float, narrow: bool) -> str:
    """Go's 10 decimals when they parse back to ``x``, else the shortest ``%g`` text that does."""
    def parses_back(text: str) -> bool:
        y = float(text)
        return (to_float32(y) if narrow else y) == x

    text = go_format(x, WILDCARD_DECIMALS)
    if not math.isfinite(x) or parses_back(text):
        return text
    for p in range(1, 18):
        text = f"{x:.{p}g}"
        if parses_back(text):
            return text
    return text


def scale_of(precision: int) -> float:
    return float(f"1e{precision}")


def round_value(x: float, precision: int, narrow: bool) -> float:
    if narrow:
        x = to_float32(x)
    r = go_round(x * scale_of(precision)) / scale_of(precision)
    return to_float32(r) if narrow else r


def round_precision(values: np.ndarray, precision: int, narrow: bool) -> np.ndarray:
    return np.array([round_value(float(v), precision, narrow) for v in values], dtype=values.dtype)


def as_float(v: Any, slot_narrow: bool) -> tuple[float, bool]:
    """A value as a double plus whether it is a float32 value."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("bool is not a number")
    if isinstance(v, np.float32):
        return float(v), True
    if isinstance(v, np.floating) or (isinstance(v, float) and type(v) is not float):
        return float(v), False  # a numpy float64 (or wider) says its own width
    if isinstance(v, (float, int, np.integer)):
        x = float(v)
        return (to_float32(x), True) if slot_narrow else (x, False)
    raise TypeError(f"expected a number, got {type(v).__name__}")


class ReferenceKeyBuilder:
    """Same interface as ``mly._native.keys.KeyBuilder``."""

    def __init__(self, slots: Sequence[tuple[Any, ...]]) -> None:
        self.slots = []
        for spec in slots:
            kind, vocabulary, precision = spec[0], spec[1], spec[2]
            narrow = bool(spec[3]) if len(spec) == 4 else True
            vocab = set(vocabulary or ())
            self.slots.append((kind, vocab, int(precision or 0), narrow))

    @property
    def n_slots(self) -> int:
        return len(self.slots)

    def _text(self, slot: tuple[Any, ...], v: Any) -> str:
        kind, vocab, precision, narrow = slot
        if kind == SLOT_NONE:
            return ""
        if kind == SLOT_STRING_VOCAB:
            if not isinstance(v, str):
                raise TypeError(type(v).__name__)
            return escape(v) if v in vocab else OOV_STRING
        if kind == SLOT_INT_VOCAB:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise TypeError(type(v).__name__)
            return str(int(v)) if int(v) in vocab else OOV_INT
        if kind == SLOT_WILDCARD:
            if isinstance(v, str):
                return escape(v)
            if isinstance(v, (bool, np.bool_)):
                return "true" if v else "false"
            if isinstance(v, (int, np.integer)):
                return str(int(v))
            x, is32 = as_float(v, narrow)
            return wildcard_float_text(x, is32)
        if kind == SLOT_FLOAT:
            x, is32 = as_float(v, narrow)
            return go_format(round_value(x, precision, is32), precision)
        raise ValueError(f"unknown slot kind {kind}")

    def build_row(self, values: Sequence[Any]) -> str:
        if len(values) != len(self.slots):
            raise ValueError("wrong number of values")
        return "/".join(self._text(s, v) for s, v in zip(self.slots, values))

    def build(self, columns: Sequence[Any], n_rows: int) -> list[str]:
        if len(columns) != len(self.slots):
            raise ValueError("wrong number of columns")
        cols = []
        for slot, col in zip(self.slots, columns):
            if slot[0] == SLOT_NONE:
                cols.append([None])
                continue
            items = list(col)  # numpy scalars keep their dtype, as the native code sees it
            if len(items) not in (1, n_rows):
                raise ValueError("wrong column length")
            cols.append(items)
        return [
            self.build_row([c[0] if len(c) == 1 else c[i] for c in cols]) for i in range(n_rows)
        ]
