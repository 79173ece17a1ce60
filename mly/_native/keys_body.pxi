# Cache keys straight from an eval request's body bytes, for keys.pyx (textually included).
#
# Why: on a batch whose every row is cached, parsing the body into Python objects and
# walking them again to render keys costs more than the lookups and the answer together.
# This reads the JSON once, in C, into the columns ``_render_rows`` takes, and renders the
# keys from them. It only accepts the plain shape the common path would key without encoding
# (``KeyBuilder.build_plain``'s rules): an object of exactly the model's inputs (and
# ``batch_size``), strings without escapes or non-ASCII bytes, ints and finite floats of the
# input's type, booleans. Anything else (an escape, ``cache_key``, a duplicate name, ``null``,
# nested values, whitespace-only or malformed JSON) returns ``None``: the caller then takes
# the common path, which parses with orjson and names the field of any error. So this path
# never decides an error and never accepts a body the common path would refuse.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

cdef enum:
    J_STR = 1
    J_INT = 2
    J_FLOAT = 3
    J_BOOL = 4
    J_NUMBER_MAX = 64  # longer number tokens go to the common path

ctypedef struct JValue:
    int t
    const char* p
    Py_ssize_t n
    int64_t i
    double f

ctypedef struct JCol:
    bint seen
    bint array
    Py_ssize_t m
    Py_ssize_t cap
    JValue* v


cdef inline const unsigned char* _ws(const unsigned char* p, const unsigned char* end) noexcept nogil:
    while p < end and (p[0] == 32 or p[0] == 10 or p[0] == 13 or p[0] == 9):
        p += 1
    return p


cdef const unsigned char* _jstring(const unsigned char* p, const unsigned char* end,
                                   const char** s, Py_ssize_t* n) noexcept nogil:
    """``p`` at an opening quote; past the closing one, or NULL for what this path leaves alone."""
    cdef const unsigned char* q = p + 1
    cdef unsigned char c
    while q < end:
        c = q[0]
        if c == 34:  # '"'
            s[0] = <const char*>(p + 1)
            n[0] = q - (p + 1)
            return q + 1
        if c == 92 or c < 32 or c >= 128:  # an escape, a control byte (invalid JSON), non-ASCII
            return NULL
        q += 1
    return NULL


cdef inline bint _digit(const unsigned char* p, const unsigned char* end) noexcept nogil:
    return p < end and 48 <= p[0] <= 57


cdef const unsigned char* _jnumber(const unsigned char* p, const unsigned char* end, JValue* v) noexcept nogil:
    """A JSON number (RFC 8259 grammar): int64 without fraction or exponent, else a finite double."""
    cdef const unsigned char* start = p
    cdef bint real = False
    cdef char tmp[J_NUMBER_MAX + 1]
    cdef Py_ssize_t n
    cdef char* stop
    if p < end and p[0] == 45:  # '-'
        p += 1
    if not _digit(p, end):
        return NULL
    if p[0] == 48:  # a leading '0' stands alone
        p += 1
    else:
        while _digit(p, end):
            p += 1
    if p < end and p[0] == 46:  # '.'
        p += 1
        if not _digit(p, end):
            return NULL
        while _digit(p, end):
            p += 1
        real = True
    if p < end and (p[0] == 101 or p[0] == 69):  # 'e' 'E'
        p += 1
        if p < end and (p[0] == 43 or p[0] == 45):
            p += 1
        if not _digit(p, end):
            return NULL
        while _digit(p, end):
            p += 1
        real = True
    n = p - start
    if n > J_NUMBER_MAX:
        return NULL
    if real:
        v.t = J_FLOAT
        if _jfloat_fast(start, p, &v.f) == 0:
            return p
        memcpy(tmp, start, n)
        tmp[n] = 0
        v.f = strtod(tmp, &stop)  # correctly rounded, as orjson's parser
        if not isfinite(v.f) or stop != tmp + n:
            return NULL
        return p
    else:
        v.t = J_INT
        return p if _jint(start, p, v) == 0 else NULL


cdef double[23] _EXACT_POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                                1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22]


cdef int _jfloat_fast(const unsigned char* p, const unsigned char* end, double* out) noexcept nogil:
    """A float token's value without ``strtod`` when one IEEE operation gives it exactly rounded
    (Clinger's fast path: at most 15 significant digits, so the digits are an exact double, times
    or over an exact power of ten up to 1e22); 1 when ``strtod`` must read it."""
    cdef bint negative = p[0] == 45
    cdef uint64_t w = 0
    cdef int digits = 0, scale = 0, e = 0
    cdef bint e_negative = False
    cdef double x
    if negative:
        p += 1
    while p < end and 48 <= p[0] <= 57:
        if w or p[0] != 48:
            digits += 1
        w = w * 10 + (p[0] - 48)
        p += 1
        if digits > 15:
            return 1
    if p < end and p[0] == 46:
        p += 1
        while p < end and 48 <= p[0] <= 57:
            if w or p[0] != 48:
                digits += 1
            w = w * 10 + (p[0] - 48)
            scale -= 1
            p += 1
            if digits > 15 or scale < -22:
                return 1
    if p < end and (p[0] == 101 or p[0] == 69):
        p += 1
        if p < end and (p[0] == 43 or p[0] == 45):
            e_negative = p[0] == 45
            p += 1
        while p < end and 48 <= p[0] <= 57:
            e = e * 10 + (p[0] - 48)
            p += 1
            if e > 400:
                return 1
        scale += -e if e_negative else e
    if scale < -22 or scale > 22:
        return 1
    x = <double>w
    x = x / _EXACT_POW10[-scale] if scale < 0 else x * _EXACT_POW10[scale]
    out[0] = -x if negative else x
    return 0


cdef int _jint(const unsigned char* p, const unsigned char* end, JValue* v) noexcept nogil:
    """The int64 of an integer token (digits, maybe a '-'); -1 past int64: the common path's."""
    cdef bint negative = p[0] == 45
    cdef uint64_t u = 0, d
    cdef uint64_t limit = (<uint64_t>INT64_MAX) + 1 if negative else <uint64_t>INT64_MAX
    if negative:
        p += 1
    while p < end:
        d = p[0] - 48
        if u > (limit - d) // 10:
            return -1
        u = u * 10 + d
        p += 1
    v.i = <int64_t>(0 - u) if negative else <int64_t>u
    return 0


cdef const unsigned char* _jscalar(const unsigned char* p, const unsigned char* end, JValue* v) noexcept nogil:
    if p >= end:
        return NULL
    if p[0] == 34:
        v.t = J_STR
        return _jstring(p, end, &v.p, &v.n)
    if p[0] == 116 and end - p >= 4 and memcmp(p, b"true", 4) == 0:
        v.t = J_BOOL
        v.i = 1
        return p + 4
    if p[0] == 102 and end - p >= 5 and memcmp(p, b"false", 5) == 0:
        v.t = J_BOOL
        v.i = 0
        return p + 5
    return _jnumber(p, end, v)


cdef int _jpush(JCol* c) noexcept nogil:
    """Room for one more value in ``c``; -1 when out of memory."""
    cdef Py_ssize_t cap
    cdef JValue* grown
    if c.m < c.cap:
        return 0
    cap = c.cap * 2 if c.cap else 64
    grown = <JValue*>realloc(c.v, cap * sizeof(JValue))
    if grown == NULL:
        return -1
    c.v = grown
    c.cap = cap
    return 0


cdef const unsigned char* _jvalue(const unsigned char* p, const unsigned char* end, JCol* c) noexcept nogil:
    """An input's value: one scalar, or a flat array of scalars."""
    c.seen = True
    if p < end and p[0] == 91:  # '['
        c.array = True
        p = _ws(p + 1, end)
        if p < end and p[0] == 93:  # ']': an empty array never matches a batch
            return NULL
        while True:
            if _jpush(c) < 0:
                return NULL
            p = _jscalar(p, end, &c.v[c.m])
            if p == NULL:
                return NULL
            c.m += 1
            p = _ws(p, end)
            if p < end and p[0] == 44:  # ','
                p = _ws(p + 1, end)
            elif p < end and p[0] == 93:
                return p + 1
            else:
                return NULL
    if _jpush(c) < 0:
        return NULL
    p = _jscalar(p, end, &c.v[0])
    c.m = 1
    return p


cdef Py_ssize_t _jobject(const unsigned char* p, const unsigned char* end, tuple names, JCol* cols,
                         Py_ssize_t n_slots, int64_t* batch_size) except -2:
    """Parse the body's object into ``cols`` (slot order); -1 when this path leaves it alone.
    Returns the number of inputs seen; ``batch_size`` stays -1 when the body has none."""
    cdef const char* s
    cdef Py_ssize_t n, k, seen = 0
    cdef JValue bs
    cdef bytes name
    p = _ws(p, end)
    if p >= end or p[0] != 123:  # '{'
        return -1
    p = _ws(p + 1, end)
    while True:
        if p >= end or p[0] != 34:
            return -1
        p = _jstring(p, end, &s, &n)
        if p == NULL:
            return -1
        p = _ws(p, end)
        if p >= end or p[0] != 58:  # ':'
            return -1
        p = _ws(p + 1, end)
        if n == 10 and memcmp(s, b"batch_size", 10) == 0:
            if batch_size[0] != -1:
                return -1
            p = _jnumber(p, end, &bs)
            if p == NULL or bs.t != J_INT or bs.i < 0:
                return -1
            batch_size[0] = bs.i
        else:
            for k in range(n_slots):
                name = <bytes>names[k]
                if PyBytes_GET_SIZE(name) == n and memcmp(PyBytes_AS_STRING(name), s, n) == 0:
                    break
            else:
                return -1  # not an input (``cache_key`` included): the common path decides
            if cols[k].seen:
                return -1
            p = _jvalue(p, end, &cols[k])
            if p == NULL:
                return -1
            seen += 1
        p = _ws(p, end)
        if p < end and p[0] == 44:
            p = _ws(p + 1, end)
        elif p < end and p[0] == 125:  # '}'
            p = _ws(p + 1, end)
            return seen if p == end else -1
        else:
            return -1


cdef int _jcolumn(const JCol* j, int code, const Slot* s, Col* c, void** owned, bint fill=True) except -1:
    """``j``'s values as the column ``_render_rows`` takes; 1 when they are not all of the input's
    plain JSON type (``build_plain``'s rules), 0 when done. ``fill`` False: only the checks."""
    cdef Py_ssize_t i, m = j.m
    cdef int want = 0
    cdef int64_t* idata
    cdef double* fdata
    cdef unsigned char* bdata
    if code == 0:
        want = J_STR
    elif code == 1 or code == 2:
        want = J_INT
    elif code == 3 or code == 4:
        want = J_FLOAT
    elif code == 5:
        want = J_BOOL
    else:
        raise ValueError(f"unknown dtype code {code}")
    for i in range(m):
        if j.v[i].t != want:
            return 1
        if code == 2 and not -2147483648 <= j.v[i].i <= 2147483647:
            return 1
        if code == 3 and isinf(<float>j.v[i].f):
            return 1
    if not fill:
        c.src = SRC_STR if want == J_STR else SRC_I64 if want == J_INT else SRC_F64 if want == J_FLOAT else SRC_BOOL
    elif want == J_STR:
        c.sp = <const char**>malloc(m * sizeof(char*))
        c.sn = <Py_ssize_t*>malloc(m * sizeof(Py_ssize_t))
        if c.sp == NULL or c.sn == NULL:
            raise MemoryError()
        for i in range(m):
            c.sp[i] = j.v[i].p
            c.sn[i] = j.v[i].n
        c.src = SRC_STR
    elif want == J_INT:
        idata = <int64_t*>malloc(m * sizeof(int64_t))
        owned[0] = idata
        if idata == NULL:
            raise MemoryError()
        for i in range(m):
            idata[i] = j.v[i].i
        c.data = idata
        c.src = SRC_I64
    elif want == J_FLOAT:
        fdata = <double*>malloc(m * sizeof(double))
        owned[0] = fdata
        if fdata == NULL:
            raise MemoryError()
        for i in range(m):
            fdata[i] = j.v[i].f
        c.data = fdata
        c.narrow = s.narrow
        c.src = SRC_F64
    else:
        bdata = <unsigned char*>malloc(m)
        owned[0] = bdata
        if bdata == NULL:
            raise MemoryError()
        for i in range(m):
            bdata[i] = <unsigned char>j.v[i].i
        c.data = bdata
        c.src = SRC_BOOL
    if s.kind == K_NONE:
        c.src = SRC_NONE
    elif not _renders(s.kind, c.src):
        return 1
    return 0


cdef Py_ssize_t _jplain(KeyBuilder kb, const unsigned char[::1] body, tuple names, codes, Py_ssize_t max_rows,
                       JCol* jcols, Col* cols, void** owned, int64_t* batch_size, bint fill=True) except -2:
    """Parse ``body`` into ``jcols`` and check it is the plain shape ``build_body`` keys, filling
    ``cols`` for ``_render_rows`` (unless not ``fill``); its number of rows, or -1 when the common
    path must decide. The caller owns (and frees) the three arrays, ``n_slots + 1`` items each, zeroed."""
    cdef Py_ssize_t n_slots = kb._n
    cdef Py_ssize_t k, n_rows, seen
    cdef const unsigned char* start
    if len(names) != n_slots or len(codes) != n_slots:
        raise ValueError(f"expected {n_slots} names and dtypes")
    if body.shape[0] == 0:
        return -1
    start = &body[0]
    seen = _jobject(start, start + body.shape[0], names, jcols, n_slots, batch_size)
    if seen != n_slots:
        return -1  # -1, or an input missing: the common path names it
    if batch_size[0] == -1:  # one row: scalars only
        n_rows = 1
    elif 1 <= batch_size[0] <= max_rows:
        n_rows = batch_size[0]
    else:
        return -1  # 0 (a row, or an error), or too large: the common path decides
    for k in range(n_slots):
        if jcols[k].array != (batch_size[0] != -1) or (jcols[k].m != n_rows and jcols[k].m != 1):
            return -1
        if batch_size[0] == -1 and codes[k] == 2:
            return -1  # an int32 row always takes the encoding path (``KeySchema.key_if_plain``)
        cols[k].step = 0 if jcols[k].m == 1 else 1
        if _jcolumn(&jcols[k], codes[k], &kb._slots[k], &cols[k], &owned[k], fill):
            return -1
    return n_rows


cdef void _jfree(JCol* jcols, Col* cols, void** owned, Py_ssize_t n_slots) noexcept:
    cdef Py_ssize_t k
    if jcols != NULL:
        for k in range(n_slots):
            free(jcols[k].v)
    if cols != NULL:
        for k in range(n_slots):
            free(cols[k].sp)
            free(cols[k].sn)
    if owned != NULL:
        for k in range(n_slots):
            free(owned[k])
    free(jcols)
    free(cols)
    free(owned)


cdef object _build_body(KeyBuilder kb, const unsigned char[::1] body, tuple names, codes, Py_ssize_t max_rows):
    cdef Py_ssize_t n_slots = kb._n
    cdef Py_ssize_t i, n_rows
    cdef int64_t batch_size = -1
    cdef JCol* jcols = NULL
    cdef Col* cols = NULL
    cdef void** owned = NULL
    cdef size_t* offs = NULL
    cdef TextBuf buf = TextBuf(NULL, 0, 0)
    cdef list result = []
    try:
        jcols = <JCol*>calloc(n_slots + 1, sizeof(JCol))
        cols = <Col*>calloc(n_slots + 1, sizeof(Col))
        owned = <void**>calloc(n_slots + 1, sizeof(void*))
        if jcols == NULL or cols == NULL or owned == NULL:
            raise MemoryError()
        n_rows = _jplain(kb, body, names, codes, max_rows, jcols, cols, owned, &batch_size)
        if n_rows < 0:
            return None
        offs = <size_t*>malloc((n_rows + 1) * sizeof(size_t))
        if offs == NULL or buf_reserve(&buf, n_rows * (16 * n_slots + 1)) < 0:
            raise MemoryError()
        if _render_rows(kb._slots, cols, n_slots, n_rows, &buf, offs) < 0:
            raise MemoryError()
        for i in range(n_rows):
            result.append(PyUnicode_DecodeUTF8(buf.p + offs[i], offs[i + 1] - offs[i], "surrogatepass"))
        return result, batch_size != -1
    finally:
        _jfree(jcols, cols, owned, n_slots)
        free(offs)
        free(buf.p)
