"""Pure-Python reference for ``mly._native.encode``: the straightforward version.

Same contract and the same error messages (tests compare both), written the
obvious way: a Python type check per value, then ``np.asarray``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from keys_ref import round_precision

from mly.errors import InputError

DT_STRING, DT_INT64, DT_INT32, DT_FLOAT32, DT_FLOAT64, DT_BOOL = range(6)
_EXPECTED = ("string", "int", "int", "float", "float", "bool")
_NP = (object, np.int64, np.int32, np.float32, np.float64, np.bool_)
_RANGE = {DT_INT64: (-(2**63), 2**63 - 1, "int64"), DT_INT32: (-(2**31), 2**31 - 1, "int32")}


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def describe(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"string {(v if len(v) <= 40 else v[:37] + '...')!r}"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return f"{json_type(v)} {v!r}"
    return json_type(v)


def _check(name: str, dtype: int, v: Any, row: int | None) -> Any:
    def wrong() -> InputError:
        message = f"expected {_EXPECTED[dtype]}, got {describe(v)}"
        if row is None and isinstance(v, (list, tuple)):
            message += " (arrays need batch_size)"
        return InputError(name, message, row=row)

    is_bool = isinstance(v, (bool, np.bool_))
    if dtype == DT_STRING:
        if not isinstance(v, str):
            raise wrong()
        return v
    if dtype == DT_BOOL:
        if not is_bool:
            raise wrong()
        return bool(v)
    if dtype in _RANGE:
        lo, hi, tname = _RANGE[dtype]
        if isinstance(v, (float, np.floating)) and not is_bool and (v >= 2.0**63 or v <= -(2.0**63)):
            raise InputError(name, f"integer out of range for {tname}", row=row)
        if is_bool or not isinstance(v, (int, np.integer)):
            raise wrong()
        if not lo <= int(v) <= hi:
            raise InputError(name, f"integer out of range for {tname}", row=row)
        return int(v)
    if is_bool or not isinstance(v, (int, float, np.integer, np.floating)):
        raise wrong()
    try:
        x = float(v)
    except OverflowError:
        raise InputError(name, "integer out of range for float", row=row) from None
    if not math.isfinite(x):
        raise InputError(name, f"must be a finite number, got {x!r}", row=row)
    with np.errstate(over="ignore"):
        narrowed = float(np.float32(x))
    if dtype == DT_FLOAT32 and math.isinf(narrowed):
        raise InputError(name, f"out of range for float32, got {x!r}", row=row)
    return x


def _check_row(name: str, dtype: int, v: Any, row: int | None, precision: int) -> Any:
    """A row's value is checked, and then rounded, before the next row is looked at: the
    error names the first row at fault."""
    x = _check(name, dtype, v, row)
    if precision > 0 and dtype in (DT_FLOAT32, DT_FLOAT64):
        with np.errstate(over="ignore"):
            rounded = round_precision(np.array([x], dtype=_NP[dtype]), precision, dtype == DT_FLOAT32)
        if not np.isfinite(rounded).all():  # x * 10**precision overflowed a double
            raise InputError(name, f"too large to round to {precision} decimals", row=row)
    return x


def encode_column(
    name: str, dtype: int, values: Any, n_rows: int, batch: bool, precision: int = 0
) -> np.ndarray:
    if batch:
        if not isinstance(values, (list, tuple)):
            raise InputError(name, f"expected an array of {n_rows} values, got {json_type(values)}")
        if len(values) == 0:
            raise InputError(name, f"expected an array of {n_rows} values, got an empty array")
        if len(values) not in (1, n_rows):
            if n_rows == 1:
                raise InputError(name, f"has {len(values)} values, batch_size is 1")
            raise InputError(
                name,
                f"has {len(values)} values, batch_size is {n_rows} "
                f"(give 1 value to broadcast, or {n_rows})",
            )
        checked = [_check_row(name, dtype, v, i, precision) for i, v in enumerate(values)]
    else:
        checked = [_check_row(name, dtype, values, None, precision)]
    if dtype == DT_STRING:
        out = np.empty(len(checked), dtype=object)
        out[:] = checked
    else:
        with np.errstate(over="ignore"):
            out = np.asarray(checked, dtype=_NP[dtype])
    if precision > 0 and dtype in (DT_FLOAT32, DT_FLOAT64):
        with np.errstate(over="ignore"):
            out = round_precision(out, precision, dtype == DT_FLOAT32)
    if batch and len(out) == 1 and n_rows > 1:
        out = np.repeat(out, n_rows)
    return out
