# cython: language_level=3
"""FNV hashes: Go-compatible FNV-1 64 for dictionary hashes, FNV-1a 64 for keys.

The dictionary hash must equal what viant/mly computes (``hash/fnv.New64``,
i.e. FNV-1, multiply then xor), so Go clients accept our ``dictHash``.
"""

cimport cython
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t, uint64_t, uint8_t

cdef uint64_t FNV64_OFFSET = 14695981039346656037ULL
cdef uint64_t FNV64_PRIME = 1099511628211ULL


cdef inline uint64_t fnv1_64_update(uint64_t h, const unsigned char* data, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        h = h * FNV64_PRIME
        h = h ^ data[i]
    return h


cdef inline uint64_t fnv1a_64_update(uint64_t h, const unsigned char* data, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        h = h ^ data[i]
        h = h * FNV64_PRIME
    return h


cdef inline int64_t _signed(uint64_t h) noexcept nogil:
    return <int64_t>h


def fnv1_64(const unsigned char[::1] data) -> int:
    """FNV-1 64 of ``data`` as an unsigned integer (Go ``fnv.New64().Sum64()``)."""
    cdef uint64_t h
    with nogil:
        h = fnv1_64_update(FNV64_OFFSET, &data[0], data.shape[0]) if data.shape[0] else FNV64_OFFSET
    return h


def fnv1_64_strings(strings) -> int:
    """Go's layer hash of a sorted string vocabulary, as a signed int64.

    The strings' UTF-8 bytes are fed one after another with no separator,
    exactly as ``shared/common/dictionary.go`` does.
    """
    cdef uint64_t h = FNV64_OFFSET
    cdef bytes b
    cdef const unsigned char* p
    for s in strings:
        b = (<str>s).encode("utf-8")
        p = b
        h = fnv1_64_update(h, p, len(b))
    return _signed(h)


@cython.boundscheck(False)
def fnv1_64_ints(const int64_t[::1] values) -> int:
    """Hash of a sorted int vocabulary: FNV-1 64 over 8-byte little-endian values.

    Go hashes nothing here (a ``binary.Write`` of a Go ``int`` fails), so every
    int layer gets the same constant; mly hashes the content (docs/differences-from-go.md #6).
    """
    cdef uint64_t h = FNV64_OFFSET
    cdef Py_ssize_t i
    cdef int j
    cdef uint64_t v
    cdef uint8_t byte
    with nogil:
        for i in range(values.shape[0]):
            v = <uint64_t>values[i]
            for j in range(8):
                byte = <uint8_t>((v >> (8 * j)) & 0xFF)
                h = h * FNV64_PRIME
                h = h ^ byte
    return _signed(h)


def key_hash(str key) -> int:
    """FNV-1a 64 of the key's UTF-8 bytes, unsigned.

    Stable across processes and languages (unlike ``hash(str)``), so it can pick
    a shard or an index that another process or a Go peer agrees on. Lone
    surrogates (never produced by a JSON parser) are hashed as ``surrogatepass``
    bytes rather than failing.
    """
    cdef Py_ssize_t n = 0
    cdef const char* p
    cdef bytes raw
    cdef uint64_t h
    try:
        p = PyUnicode_AsUTF8AndSize(key, &n)
    except UnicodeEncodeError:
        raw = key.encode("utf-8", "surrogatepass")
        p = raw
        n = len(raw)
    # Keys are short: releasing the GIL would cost more than hashing them.
    h = fnv1a_64_update(FNV64_OFFSET, <const unsigned char*>p, n)
    return h
