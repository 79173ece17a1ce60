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

from cpython.unicode cimport PyUnicode_DecodeASCII


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


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _rows_column(const JCol* j, int code, double scale, const Py_ssize_t[::1] rows):
    """The ``rows`` of one plain column as ``encode_column`` encodes them (a broadcast value repeated)."""
    cdef Py_ssize_t i, at, n = rows.shape[0]
    cdef Py_ssize_t step = 0 if j.m == 1 else 1
    cdef object[::1] strs
    cdef int64_t[::1] i64
    cdef int32_t[::1] i32
    cdef float[::1] f32
    cdef double[::1] f64
    cdef unsigned char[::1] b8
    cdef double x
    cdef bint rounded = scale > 0
    if code == 0:
        out = np.empty(n, dtype=object)
        strs = out
        for i in range(n):
            at = rows[i] * step
            strs[i] = PyUnicode_DecodeASCII(j.v[at].p, j.v[at].n, NULL)
    elif code == 1:
        out = np.empty(n, dtype=np.int64)
        i64 = out
        for i in range(n):
            i64[i] = j.v[rows[i] * step].i
    elif code == 2:
        out = np.empty(n, dtype=np.int32)
        i32 = out
        for i in range(n):
            i32[i] = <int32_t>j.v[rows[i] * step].i
    elif code == 3:
        out = np.empty(n, dtype=np.float32)
        f32 = out
        for i in range(n):
            f32[i] = <float>j.v[rows[i] * step].f
            if rounded:
                f32[i] = <float>round_scaled(<double>f32[i], scale, True)
    elif code == 4:
        out = np.empty(n, dtype=np.float64)
        f64 = out
        for i in range(n):
            x = j.v[rows[i] * step].f
            f64[i] = round_scaled(x, scale, False) if rounded else x
    elif code == 5:
        out = np.empty(n, dtype=np.bool_)
        b8 = out.view(np.uint8)
        for i in range(n):
            b8[i] = 1 if j.v[rows[i] * step].i else 0
    else:
        raise ValueError(f"unknown dtype code {code}")
    return out


cdef object _body_rows(KeyBuilder kb, const unsigned char[::1] body, tuple names, codes, precisions,
                       rows, Py_ssize_t max_rows):
    cdef Py_ssize_t n_slots = kb._n
    cdef Py_ssize_t k, n_rows
    cdef int64_t batch_size = -1
    cdef JCol* jcols = NULL
    cdef Col* cols = NULL
    cdef void** owned = NULL
    cdef const Py_ssize_t[::1] wanted
    if len(precisions) != n_slots:
        raise ValueError(f"expected {n_slots} precisions")
    try:
        jcols = <JCol*>calloc(n_slots + 1, sizeof(JCol))
        cols = <Col*>calloc(n_slots + 1, sizeof(Col))
        owned = <void**>calloc(n_slots + 1, sizeof(void*))
        if jcols == NULL or cols == NULL or owned == NULL:
            raise MemoryError()
        n_rows = _jplain(kb, body, names, codes, max_rows, jcols, cols, owned, &batch_size)
        if n_rows < 0:
            return None
        wanted = np.asarray(rows, dtype=np.intp)
        if wanted.shape[0] and (np.min(wanted) < 0 or np.max(wanted) >= n_rows):
            raise IndexError(f"rows must be in 0..{n_rows - 1}")
        # ``scale`` 0: not rounded (the encoder's own ``float(f"1e{precision}")`` otherwise).
        scales = [float(f"1e{p}") if p > 0 else 0.0 for p in precisions]
        for k in range(n_slots):
            if scales[k] and not _rounds(&jcols[k], codes[k], scales[k]):
                return None
        return [_rows_column(&jcols[k], codes[k], scales[k], wanted) for k in range(n_slots)]
    finally:
        _jfree(jcols, cols, owned, n_slots)
