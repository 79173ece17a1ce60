# cython: language_level=3, boundscheck=False, wraparound=False
"""The plainest HTTP/1.1 request, recognised in one pass over the read's bytes.

Why native: a cached eval answer costs a few microseconds, while taking its request
through llhttp's callbacks and uvicorn's per-request objects (scope, header list,
cycle, keep-alive bookkeeping) cost several times that in Python. Most requests a
serving fleet sees are the same shape: a keep-alive ``POST`` of a JSON body with a
``Content-Length``. ``plain_post`` recognises exactly that shape and nothing else; any
other request (a header it does not know to be harmless, an odd byte, a chunked or
``Expect`` body, a body not yet complete) gets ``None`` and goes to the full parser,
which decides it as before. So this path never answers a request the full parser
would refuse or read differently: it accepts a strict subset of what llhttp accepts.

The subset:

- the request line is ``POST <target> HTTP/1.1`` with single spaces, the target an
  origin-form path of unreserved characters and ``/`` (no query, no percent-escape);
- each header line is ``name: value`` ending in CRLF: the name of token characters,
  the value of visible ASCII, spaces and tabs (no obs-text, no line folding);
- exactly one ``Content-Length`` of at most 9 digits, and the whole body present;
- no ``Transfer-Encoding``, ``Expect``, ``Upgrade``, ``HTTP2-Settings`` or ``TE``,
  and ``Connection`` only as ``keep-alive``;
- the head no longer than the server's head limit, the body no longer than asked. The
  head is measured both as its bytes and as ``h1limits.head_size`` counts what llhttp
  reports (each field as ``name: value`` and CRLF: a field with no space after the colon
  counts a byte more than it has), so a head the full path refuses is never taken here.
"""

from libc.stdint cimport uint8_t

cdef extern from *:
    """
    /* 1: token characters (RFC 9110 tchar); 2: path characters kept here (unreserved and '/');
       4: field-value characters (VCHAR, SP, HTAB) */
    static unsigned char mly_h1_class[256];
    static void mly_h1_init(void) {
        const char *tchar = "!#$%&'*+-.^_`|~";
        const char *path = "-._~/";
        int c;
        for (c = '0'; c <= '9'; c++) mly_h1_class[c] |= 1 | 2;
        for (c = 'a'; c <= 'z'; c++) mly_h1_class[c] |= 1 | 2;
        for (c = 'A'; c <= 'Z'; c++) mly_h1_class[c] |= 1 | 2;
        for (; *tchar; tchar++) mly_h1_class[(unsigned char)*tchar] |= 1;
        for (; *path; path++) mly_h1_class[(unsigned char)*path] |= 2;
        for (c = 0x21; c <= 0x7e; c++) mly_h1_class[c] |= 4;
        mly_h1_class[' '] |= 4;
        mly_h1_class['\\t'] |= 4;
    }
    """
    uint8_t* _CLASS "mly_h1_class"
    void _init_classes "mly_h1_init"() noexcept nogil

_init_classes()

DEF _TOKEN = 1
DEF _PATH = 2
DEF _VALUE = 4

# Header names (lower case) this path must leave to the full parser.
cdef enum:
    H_OTHER = 0
    H_CONTENT_LENGTH = 1
    H_CONNECTION = 2
    H_REFUSE = 3


cdef inline int _lower(int c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef bint _name_is(const unsigned char* p, Py_ssize_t n, const char* lower) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if lower[i] == 0 or _lower(p[i]) != <unsigned char>lower[i]:
            return False
    return lower[n] == 0


cdef int _header_kind(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    if _name_is(p, n, b"content-length"):
        return H_CONTENT_LENGTH
    if _name_is(p, n, b"connection"):
        return H_CONNECTION
    if (_name_is(p, n, b"transfer-encoding") or _name_is(p, n, b"expect") or _name_is(p, n, b"upgrade")
            or _name_is(p, n, b"http2-settings") or _name_is(p, n, b"te")):
        return H_REFUSE
    return H_OTHER


def plain_post(const unsigned char[::1] data, Py_ssize_t start, Py_ssize_t max_head, Py_ssize_t max_body):
    """``(path, body_start, end)`` of the plain keep-alive POST at ``data[start:]`` (its body is
    ``data[body_start:end]``, the next request begins at ``end``), or ``None`` for anything else."""
    cdef Py_ssize_t size = data.shape[0]
    cdef const unsigned char* base
    cdef const unsigned char* p
    cdef const unsigned char* end
    cdef const unsigned char* path
    cdef const unsigned char* name
    cdef const unsigned char* value
    cdef const unsigned char* value_end
    cdef Py_ssize_t path_len, name_len, head_len, counted, length = -1, i
    cdef int kind
    if start < 0 or size - start < 16:
        return None
    base = &data[0]
    p = base + start
    end = base + size
    if max_head > 0 and end - p > max_head:
        end = p + max_head  # the head must end within the limit; the body may go past it
        if end > base + size:
            end = base + size
    if not (p[0] == 80 and p[1] == 79 and p[2] == 83 and p[3] == 84 and p[4] == 32 and p[5] == 47):  # "POST /"
        return None
    p += 5
    path = p
    while p < end and _CLASS[p[0]] & _PATH:
        p += 1
    path_len = p - path
    counted = path_len + 16  # ``head_size``: the request line as ``POST <target> HTTP/1.1\r\n``
    if end - p < 11 or p[0] != 32:
        return None
    p += 1
    if not (p[0] == 72 and p[1] == 84 and p[2] == 84 and p[3] == 80 and p[4] == 47 and p[5] == 49
            and p[6] == 46 and p[7] == 49 and p[8] == 13 and p[9] == 10):  # "HTTP/1.1\r\n"
        return None
    p += 10
    while True:
        if end - p < 2:
            return None
        if p[0] == 13:
            if p[1] != 10:
                return None
            p += 2
            break
        name = p
        while p < end and _CLASS[p[0]] & _TOKEN:
            p += 1
        name_len = p - name
        if name_len == 0 or p >= end or p[0] != 58:  # ':' right after a non-empty name
            return None
        p += 1
        while p < end and (p[0] == 32 or p[0] == 9):
            p += 1
        value = p
        while p < end and _CLASS[p[0]] & _VALUE:
            p += 1
        if end - p < 2 or p[0] != 13 or p[1] != 10:
            return None
        counted += name_len + (p - value) + 4  # llhttp's value keeps trailing whitespace
        value_end = p
        while value_end > value and ((value_end - 1)[0] == 32 or (value_end - 1)[0] == 9):
            value_end -= 1
        p += 2
        kind = _header_kind(name, name_len)
        if kind == H_REFUSE:
            return None
        if kind == H_CONNECTION and not _name_is(value, value_end - value, b"keep-alive"):
            return None
        if kind == H_CONTENT_LENGTH:
            if length != -1 or value_end == value or value_end - value > 9:
                return None
            length = 0
            for i in range(value_end - value):
                if not 48 <= value[i] <= 57:
                    return None
                length = length * 10 + (value[i] - 48)
    if length < 0 or length > max_body or (max_head > 0 and counted > max_head):
        return None
    head_len = p - (base + start)
    if size - start - head_len < length:
        return None  # the body is not all here yet: the full parser waits for it
    return ((<const char*>path)[:path_len].decode("ascii"), start + head_len, start + head_len + length)
