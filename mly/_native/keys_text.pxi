# Key text rendering into a growable C buffer, for keys.pyx (textually included).
#
# Every function works without the GIL and returns -1 only when out of memory,
# so a whole batch can be rendered in one nogil pass and decoded once per row.


cdef int buf_reserve(TextBuf* b, size_t extra) noexcept nogil:
    cdef size_t need = b.len + extra
    cdef size_t cap
    cdef char* p
    if need <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 256
    while cap < need:
        cap *= 2
    p = <char*>realloc(b.p, cap)
    if p == NULL:
        return -1
    b.p = p
    b.cap = cap
    return 0


cdef inline int put_bytes(TextBuf* b, const char* s, size_t n) noexcept nogil:
    if buf_reserve(b, n) < 0:
        return -1
    memcpy(b.p + b.len, s, n)
    b.len += n
    return 0


cdef int put_escaped(TextBuf* b, const char* s, Py_ssize_t n) noexcept nogil:
    # '/' and '\\' are ASCII, so they never occur inside a multi-byte UTF-8
    # sequence: escaping bytes is escaping characters.
    cdef Py_ssize_t i
    cdef char c
    cdef char* out
    if memchr(s, b'/', n) == NULL and memchr(s, b'\\', n) == NULL:
        return put_bytes(b, s, n)
    if buf_reserve(b, 2 * n) < 0:
        return -1
    out = b.p + b.len
    for i in range(n):
        c = s[i]
        if c == b'/' or c == b'\\':
            out[0] = b'\\'
            out += 1
        out[0] = c
        out += 1
    b.len = out - b.p
    return 0


cdef int put_int(TextBuf* b, int64_t v) noexcept nogil:
    cdef char tmp[24]
    cdef int i = 24
    # Negate in unsigned arithmetic: -INT64_MIN does not fit an int64.
    cdef uint64_t u = <uint64_t>v if v >= 0 else (~(<uint64_t>v)) + 1
    while True:
        i -= 1
        tmp[i] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    if v < 0:
        i -= 1
        tmp[i] = b'-'
    return put_bytes(b, tmp + i, 24 - i)


cdef int put_float(TextBuf* b, double v, int decimals) noexcept nogil:
    """Go ``strconv.FormatFloat(v, 'f', decimals, _)`` for an already-narrowed ``v``.

    glibc's ``%.*f`` is exact and rounds ties to even, like Go and Python, so
    the digits match; only the non-finite spellings differ and are Go's here.
    """
    cdef int n
    cdef size_t avail
    if isnan(v):
        return put_bytes(b, "NaN", 3)
    if isinf(v):
        return put_bytes(b, "+Inf" if v > 0 else "-Inf", 4)
    if buf_reserve(b, 48 + decimals) < 0:
        return -1
    avail = b.cap - b.len
    n = snprintf(b.p + b.len, avail, "%.*f", decimals, v)
    if n < 0:
        return -1
    if <size_t>n >= avail:
        if buf_reserve(b, n + 1) < 0:
            return -1
        snprintf(b.p + b.len, n + 1, "%.*f", decimals, v)
    b.len += n
    return 0
