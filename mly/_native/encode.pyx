# cython: language_level=3
"""Request values -> typed numpy columns, validated on the way.

Checking and converting happen in one C pass over the parsed JSON list, so an
error can name the row at fault and a valid column costs no Python arithmetic.
Types are strict where Go's decoder is: ``true`` is not an int, ``1.5`` is not
an int, but ``1`` is a float.
"""

cimport cython
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport INT32_MAX, INT32_MIN, int32_t, int64_t

import numpy as np

from mly._native.keys import round_precision
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


cdef inline object _row(Py_ssize_t i, bint batch):
    return i if batch else None


cdef object _wrong_type(str name, int dtype, object v, Py_ssize_t i, bint batch):
    return InputError(name, f"expected {_EXPECTED[dtype]}, got {json_type(v)}", row=_row(i, batch))


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
                raise InputError(name, "integer out of range for int32", row=_row(i, batch))
            d32[i] = <int32_t>x
        else:
            if overflow:
                raise InputError(name, "integer out of range for int64", row=_row(i, batch))
            d64[i] = <int64_t>x
    return out


cdef double _slow_float(str name, int dtype, object v, Py_ssize_t i, bint batch) except? -1:
    if isinstance(v, _bool_types) or not isinstance(v, (_float_types, _int_types)):
        raise _wrong_type(name, dtype, v, i, batch)
    try:
        return float(v)
    except OverflowError:
        raise InputError(name, "integer out of range for float", row=_row(i, batch)) from None


@cython.boundscheck(False)
cdef object _floats(str name, int dtype, list seq, bint batch):
    cdef Py_ssize_t i, n = len(seq)
    cdef double x
    cdef bint is32 = dtype == C_FLOAT32
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
        if is32:
            # Go decodes a float32 input as float64 and narrows it: huge -> ±Inf.
            d32[i] = <float>x
        else:
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
        out = _floats(name, dtype, seq, batch)
        if precision > 0:
            out = round_precision(out, precision, dtype == C_FLOAT32)
    else:
        out = _bools(name, seq, batch)
    if n == 1 and batch and n_rows > 1:
        out = np.repeat(out, n_rows)
    return out
