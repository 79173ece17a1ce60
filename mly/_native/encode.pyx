# cython: language_level=3
"""Request values -> typed numpy columns, validated on the way.

Checking and converting happen in one C pass over the parsed JSON list, so an
error can name the row at fault and a valid column costs no Python arithmetic.
Types are strict where Go's decoder is: ``true`` is not an int, ``1.5`` is not
an int, but ``1`` is a float. A value that does not fit the input's dtype (an
integer past int64, a float past float32) or is not finite is refused rather
than wrapped, narrowed to infinity or passed to TensorFlow as NaN.
"""

cimport cython
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.math cimport isfinite, isinf
from libc.stdint cimport INT32_MAX, INT32_MIN, int32_t, int64_t

from mly._native.rounding cimport round_scaled

import numpy as np

from mly.errors import InputError

DT_STRING = 0
DT_INT64 = 1
DT_INT32 = 2
DT_FLOAT32 = 3
DT_FLOAT64 = 4
DT_BOOL = 5

cdef enum:
    C_STRING = 0
    C_INT64 = 1
    C_INT32 = 2
    C_FLOAT32 = 3
    C_FLOAT64 = 4
    C_BOOL = 5

_EXPECTED = ("string", "int", "int", "float", "float", "bool")
_NP_DTYPES = (object, np.int64, np.int32, np.float32, np.float64, np.bool_)
_bool_types = (bool, np.bool_)
_int_types = (int, np.integer)
_float_types = (float, np.floating)


def json_type(v) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if v is None:
        return "null"
    if isinstance(v, _bool_types):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, _int_types):
        return "int"
    if isinstance(v, _float_types):
        return "float"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def describe(v) -> str:
    """A value as an error message shows it: its JSON type, and the value itself if a scalar."""
    if v is None:
        return "null"
    if isinstance(v, _bool_types):
        return "true" if v else "false"
    if isinstance(v, str):
        text = v if len(v) <= 40 else v[:37] + "..."
        return f"string {text!r}"
    if isinstance(v, (_int_types, _float_types)):
        return f"{json_type(v)} {v!r}"
    return json_type(v)


def type_message(int dtype, object v) -> str:
    """The one wording of a wrong-typed value, for JSON bodies and query strings alike."""
    return f"expected {_EXPECTED[dtype]}, got {describe(v)}"


cdef inline object _row(Py_ssize_t i, bint batch):
    return i if batch else None


cdef object _wrong_type(str name, int dtype, object v, Py_ssize_t i, bint batch):
    message = type_message(dtype, v)
    if not batch and isinstance(v, (list, tuple)):
        message += " (arrays need batch_size)"
    return InputError(name, message, row=_row(i, batch))


cdef object _out_of_range(str name, str dtype_name, Py_ssize_t i, bint batch):
    return InputError(name, f"integer out of range for {dtype_name}", row=_row(i, batch))


cdef object _strings(str name, list seq, bint batch):
    cdef Py_ssize_t i, n = len(seq)
    out = np.empty(n, dtype=object)
    cdef object[::1] dst = out
    for i in range(n):
        v = seq[i]
        if not isinstance(v, str):
            raise _wrong_type(name, C_STRING, v, i, batch)
        dst[i] = v
    return out


cdef long long _slow_int(str name, int dtype, object v, Py_ssize_t i, bint batch, int* overflow) except? -1:
    # int subclasses and numpy integers; bool is an int subclass and is refused.
    if isinstance(v, _float_types) and v == v and (v >= 9.223372036854775807e18 or v <= -9.223372036854775808e18):
        # An integer literal too long for a 64-bit parser arrives as a float: it is
        # out of range, not of the wrong type.
        raise _out_of_range(name, "int32" if dtype == C_INT32 else "int64", i, batch)
    if isinstance(v, _bool_types) or not isinstance(v, _int_types):
        raise _wrong_type(name, dtype, v, i, batch)
    return PyLong_AsLongLongAndOverflow(int(v), overflow)


@cython.boundscheck(False)
cdef object _ints(str name, int dtype, list seq, bint batch):
    cdef Py_ssize_t i, n = len(seq)
    cdef int overflow = 0
    cdef long long x
    cdef bint is32 = dtype == C_INT32
    out = np.empty(n, dtype=np.int32 if is32 else np.int64)
    cdef int64_t[::1] d64
    cdef int32_t[::1] d32
    if is32:
        d32 = out
    else:
        d64 = out
    for i in range(n):
        v = seq[i]
        if type(v) is int:
            x = PyLong_AsLongLongAndOverflow(v, &overflow)
        else:
            x = _slow_int(name, dtype, v, i, batch, &overflow)
        if is32:
            if overflow or x < INT32_MIN or x > INT32_MAX:
                raise _out_of_range(name, "int32", i, batch)
            d32[i] = <int32_t>x
        else:
            if overflow:
                raise _out_of_range(name, "int64", i, batch)
            d64[i] = <int64_t>x
    return out


cdef double _slow_float(str name, int dtype, object v, Py_ssize_t i, bint batch) except? -1:
    if isinstance(v, _bool_types) or not isinstance(v, (_float_types, _int_types)):
        raise _wrong_type(name, dtype, v, i, batch)
    try:
        return float(v)
    except OverflowError:
        raise InputError(name, "integer out of range for float", row=_row(i, batch)) from None


cdef object _bad_float(str name, bint is32, double x, Py_ssize_t i, bint batch):
    if not isfinite(x):
        return InputError(name, f"must be a finite number, got {x!r}", row=_row(i, batch))
    return InputError(name, f"out of range for float32, got {x!r}", row=_row(i, batch))


@cython.boundscheck(False)
cdef object _floats(str name, int dtype, list seq, bint batch, int precision):
    # Rounding (``precision`` > 0) happens in the same pass, with the key builder's
    # expression, so the value TensorFlow gets is the one the cache key names.
    cdef Py_ssize_t i, n = len(seq)
    cdef double x
    cdef bint is32 = dtype == C_FLOAT32
    cdef bint rounded = precision > 0
    cdef double scale = float(f"1e{precision}") if rounded else 1.0
    out = np.empty(n, dtype=np.float32 if is32 else np.float64)
    cdef float[::1] d32
    cdef double[::1] d64
    if is32:
        d32 = out
    else:
        d64 = out
    for i in range(n):
        v = seq[i]
        if type(v) is float:
            x = PyFloat_AS_DOUBLE(v)
        else:
            x = _slow_float(name, dtype, v, i, batch)
        if not isfinite(x):
            raise _bad_float(name, is32, x, i, batch)
        if is32:
            # Narrowing a finite double past float32's range gives ±Inf (Go passes
            # that to TensorFlow; mly refuses it).
            d32[i] = <float>x
            if isinf(d32[i]):
                raise _bad_float(name, is32, x, i, batch)
            if rounded:
                x = round_scaled(<double>d32[i], scale, True)
                if not isfinite(x):
                    raise InputError(name, f"too large to round to {precision} decimals", row=_row(i, batch))
                d32[i] = <float>x
        else:
            if rounded:
                x = round_scaled(x, scale, False)
                if not isfinite(x):
                    # x * 10**precision overflows a double only for |x| near 1e308.
                    raise InputError(name, f"too large to round to {precision} decimals", row=_row(i, batch))
            d64[i] = x
    return out


@cython.boundscheck(False)
cdef object _bools(str name, list seq, bint batch):
    cdef Py_ssize_t i, n = len(seq)
    out = np.empty(n, dtype=np.bool_)
    cdef unsigned char[::1] dst = out.view(np.uint8)
    for i in range(n):
        v = seq[i]
        if v is True:
            dst[i] = 1
        elif v is False:
            dst[i] = 0
        elif isinstance(v, np.bool_):
            dst[i] = 1 if v else 0
        else:
            raise _wrong_type(name, C_BOOL, v, i, batch)
    return out


def encode_column(str name, int dtype, object values, Py_ssize_t n_rows, bint batch, int precision=0):
    """One input's values as a 1-D array TensorFlow can take, or an InputError naming the row.

    Single mode (``batch=False``) takes one scalar and returns a length-1 array;
    batch mode takes a list of ``n_rows`` values, or 1 that is broadcast.
    """
    cdef Py_ssize_t n = 1
    cdef list seq
    if dtype < C_STRING or dtype > C_BOOL:
        raise ValueError(f"unknown dtype code {dtype}")
    if batch:
        if n_rows < 1:
            raise ValueError(f"n_rows must be >= 1 in batch mode, got {n_rows}")
        if not isinstance(values, (list, tuple)):
            raise InputError(name, f"expected an array of {n_rows} values, got {json_type(values)}")
        n = len(values)
        if n == 0:
            raise InputError(name, f"expected an array of {n_rows} values, got an empty array")
        if n != 1 and n != n_rows:
            if n_rows == 1:
                raise InputError(name, f"has {n} values, batch_size is 1")
            raise InputError(
                name, f"has {n} values, batch_size is {n_rows} (give 1 value to broadcast, or {n_rows})"
            )
        seq = values if type(values) is list else list(values)
    else:
        seq = [values]
    if dtype == C_STRING:
        out = _strings(name, seq, batch)
    elif dtype == C_INT64 or dtype == C_INT32:
        out = _ints(name, dtype, seq, batch)
    elif dtype == C_FLOAT32 or dtype == C_FLOAT64:
        if precision > 308:
            raise ValueError(f"precision must be 1..308, got {precision}")
        out = _floats(name, dtype, seq, batch, precision)
    else:
        out = _bools(name, seq, batch)
    if n == 1 and batch and n_rows > 1:
        out = np.repeat(out, n_rows)
    return out
