# cython: language_level=3
"""FNV hashes: FNV-1 64 (Go's ``hash/fnv.New64``) for dictionary hashes, FNV-1a 64 for keys.

A client compares the ``dictHash`` the server sends with the one in the server's
``meta/dictionary``, so both come from this module: the framing below may differ
from Go's (it does, to tell every vocabulary change apart) without breaking clients.
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


cdef inline uint64_t fnv1_64_u64(uint64_t h, uint64_t v) noexcept nogil:
    """Feed ``v`` as 8 little-endian bytes: lengths and counts frame what follows them."""
    cdef int j
    for j in range(8):
        h = h * FNV64_PRIME
        h = h ^ <uint8_t>((v >> (8 * j)) & 0xFF)
    return h


cdef uint64_t _framed_text(uint64_t h, str text) except? 0:
    cdef bytes b = text.encode("utf-8", "surrogatepass")
    cdef const unsigned char* p = b
    h = fnv1_64_u64(h, <uint64_t>len(b))
    return fnv1_64_update(h, p, len(b))


cdef uint64_t _layer_head(str name, unsigned char tag, Py_ssize_t count) except? 0:
    cdef uint64_t h = fnv1_64_update(FNV64_OFFSET, &tag, 1)
    h = _framed_text(h, name)
    return fnv1_64_u64(h, <uint64_t>count)


def layer_hash_strings(str name, strings) -> int:
    """A string layer's hash: FNV-1 64 over ``'s'``, the name and each string, every
    one of them preceded by its UTF-8 length, and the count (all as 8-byte LE).

    Length prefixes keep ``["ab","c"]`` and ``["a","bc"]`` apart, and the name binds
    the vocabulary to its input (Go joins the strings bare and names nothing).
    """
    values = list(strings)
    cdef uint64_t h = _layer_head(name, b"s"[0], len(values))
    for s in values:
        h = _framed_text(h, <str>s)
    return _signed(h)


@cython.boundscheck(False)
def layer_hash_ints(str name, const int64_t[::1] values) -> int:
    """An int layer's hash: FNV-1 64 over ``'i'``, the length-prefixed name, the count and
    each value, as 8-byte little-endian int64 (Go hashes no int content at all)."""
    cdef uint64_t h = _layer_head(name, b"i"[0], values.shape[0])
    cdef Py_ssize_t i
    with nogil:
        for i in range(values.shape[0]):
            h = fnv1_64_u64(h, <uint64_t>values[i])
    return _signed(h)


@cython.boundscheck(False)
def combine_layer_hashes(const int64_t[::1] hashes) -> int:
    """The dictionary hash: FNV-1 64 over the count and each layer hash in layer order.

    Order matters (Go sums, so swapping two layers' vocabularies kept the hash).
    """
    cdef uint64_t h = fnv1_64_u64(FNV64_OFFSET, <uint64_t>hashes.shape[0])
    cdef Py_ssize_t i
    for i in range(hashes.shape[0]):
        h = fnv1_64_u64(h, <uint64_t>hashes[i])
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
