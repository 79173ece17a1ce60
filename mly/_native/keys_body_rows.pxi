# Some rows of an eval request's body as the encoded columns TensorFlow takes, for keys.pyx
# (textually included, after keys_body.pxi).
#
# Why: on a batch whose rows mostly hit the cache, the rows that miss are the only ones to
# evaluate. Parsing the whole body into Python objects and encoding every row to pick a few
# of them cost more than the lookups. This reads the body with the same parser as the keys
# (``_jplain``: the same plain shape, or ``None``) and encodes only the rows asked for, with
# ``encode.encode_column``'s rules (dtypes, float32 narrowing, ``Precision`` rounding), so the
# arrays are the ones the common path would feed for those rows. A value the encoder would
# refuse (a float too large to round) returns ``None`` whichever row holds it: the common
# path then gives its error, named as it names it.

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_DecodeASCII

_np_empty = np.empty
_np_object = np.dtype(object)
_np_int64 = np.dtype(np.int64)
_np_int32 = np.dtype(np.int32)
_np_float32 = np.dtype(np.float32)
_np_float64 = np.dtype(np.float64)
_np_bool = np.dtype(np.bool_)


cdef bint _rounds(const JCol* j, int code, double scale) noexcept:
    """Whether every value of a float column rounds to a finite value (``encode._floats``)."""
    cdef Py_ssize_t i
    cdef double x
    if code != 3 and code != 4:
        return True
    for i in range(j.m):
        x = j.v[i].f
        if code == 3:
            x = round_scaled(<double>(<float>x), scale, True)
        else:
            x = round_scaled(x, scale, False)
        if not isfinite(x):
            return False
    return True


cdef object _empty(Py_ssize_t n, object dtype, Py_buffer* view):
    """A new 1-D array of ``n`` values and its buffer (``view``, to release) to write them into."""
    out = _np_empty(n, dtype)
    PyObject_GetBuffer(out, view, PyBUF_WRITABLE)
    return out


cdef object _rows_column(const JCol* j, int code, double scale, const Py_ssize_t* rows, Py_ssize_t n):
    """The ``rows`` of one plain column as ``encode_column`` encodes them (a broadcast value repeated).
    ``scale`` > 0: rounded to ``Precision`` decimals with the encoder's expression."""
    cdef Py_ssize_t i, at
    cdef Py_ssize_t step = 0 if j.m == 1 else 1
    cdef Py_buffer view
    cdef PyObject** strs
    cdef float f
    cdef double x
    if code == 0:
        out = _empty(n, _np_object, &view)
        strs = <PyObject**>view.buf
        try:
            for i in range(n):
                at = rows[i] * step
                text = PyUnicode_DecodeASCII(j.v[at].p, j.v[at].n, NULL)
                Py_INCREF(text)
                Py_XDECREF(strs[i])  # np.empty's None
                strs[i] = <PyObject*>text
        finally:
            PyBuffer_Release(&view)
        return out
    if code == 1:
        out = _empty(n, _np_int64, &view)
        for i in range(n):
            (<int64_t*>view.buf)[i] = j.v[rows[i] * step].i
    elif code == 2:
        out = _empty(n, _np_int32, &view)
        for i in range(n):
            (<int32_t*>view.buf)[i] = <int32_t>j.v[rows[i] * step].i
    elif code == 3:
        out = _empty(n, _np_float32, &view)
        for i in range(n):
            f = <float>j.v[rows[i] * step].f
            if scale > 0:
                f = <float>round_scaled(<double>f, scale, True)
            (<float*>view.buf)[i] = f
    elif code == 4:
        out = _empty(n, _np_float64, &view)
        for i in range(n):
            x = j.v[rows[i] * step].f
            (<double*>view.buf)[i] = round_scaled(x, scale, False) if scale > 0 else x
    elif code == 5:
        out = _empty(n, _np_bool, &view)
        for i in range(n):
            (<unsigned char*>view.buf)[i] = 1 if j.v[rows[i] * step].i else 0
    else:
        raise ValueError(f"unknown dtype code {code}")
    PyBuffer_Release(&view)
    return out


cdef object _body_rows(KeyBuilder kb, const unsigned char[::1] body, tuple names, codes, tuple scales,
                       list rows, Py_ssize_t max_rows):
    cdef Py_ssize_t n_slots = kb._n
    cdef Py_ssize_t k, i, n_rows, n = len(rows)
    cdef int64_t batch_size = -1
    cdef JCol* jcols = NULL
    cdef Col* cols = NULL
    cdef void** owned = NULL
    cdef Py_ssize_t* wanted = NULL
    cdef list out
    if len(scales) != n_slots:
        raise ValueError(f"expected {n_slots} scales")
    try:
        jcols = <JCol*>calloc(n_slots + 1, sizeof(JCol))
        cols = <Col*>calloc(n_slots + 1, sizeof(Col))
        owned = <void**>calloc(n_slots + 1, sizeof(void*))
        wanted = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
        if jcols == NULL or cols == NULL or owned == NULL or wanted == NULL:
            raise MemoryError()
        n_rows = _jplain(kb, body, names, codes, max_rows, jcols, cols, owned, &batch_size, False)
        if n_rows < 0:
            return None
        for i in range(n):
            wanted[i] = rows[i]
            if not 0 <= wanted[i] < n_rows:
                raise IndexError(f"rows must be in 0..{n_rows - 1}, got {wanted[i]}")
        for k in range(n_slots):
            if scales[k] and not _rounds(&jcols[k], codes[k], scales[k]):
                return None
        out = []
        for k in range(n_slots):
            out.append(_rows_column(&jcols[k], codes[k], scales[k], wanted, n))
        return out
    finally:
        _jfree(jcols, cols, owned, n_slots)
        free(wanted)
