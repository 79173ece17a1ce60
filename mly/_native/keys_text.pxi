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


cdef double[16] _POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15]
cdef uint64_t[16] _IPOW10 = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000,
                             10000000000, 100000000000, 1000000000000, 10000000000000, 100000000000000,
                             1000000000000000]


cdef int put_fixed_fast(TextBuf* b, double v, int decimals) noexcept nogil:
    """``%.*f`` of a finite ``v`` without ``snprintf`` (a tenth of its cost, paid per keyed float),
    or 1 when this cannot be sure of the digits and ``snprintf`` must write them.

    Sure when ``|v| * 10**decimals`` is below 2**50 and at least 0.25 away from a half: the
    product's rounding error is then under 0.125, so its nearest integer is the nearest integer
    of the exact value, which is the digits ``%.*f`` prints (a tie, which ``%.*f`` breaks to even,
    is never this close). glibc writes a '-' for every negative value, zero included.
    """
    cdef double scaled, r
    cdef uint64_t digits, whole, frac
    cdef char tmp[40]
    cdef int i = 40, k
    if decimals > 15:
        return 1
    scaled = fabs(v) * _POW10[decimals]
    if not scaled < 1125899906842624.0:  # 2**50
        return 1
    r = floor(scaled + 0.5)
    if fabs(scaled - r) > 0.25:
        return 1
    digits = <uint64_t>r
    whole = digits // _IPOW10[decimals]
    frac = digits - whole * _IPOW10[decimals]
    if decimals:
        for k in range(decimals):
            i -= 1
            tmp[i] = <char>(48 + frac % 10)
            frac //= 10
        i -= 1
        tmp[i] = b'.'
    while True:
        i -= 1
        tmp[i] = <char>(48 + whole % 10)
        whole //= 10
        if whole == 0:
            break
    if signbit(v):
        i -= 1
        tmp[i] = b'-'
    return -1 if put_bytes(b, tmp + i, 40 - i) < 0 else 0


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
    n = put_fixed_fast(b, v, decimals)
    if n <= 0:
        return n
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
