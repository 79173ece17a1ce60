# cython: language_level=3, boundscheck=False, wraparound=False
"""Aerospike batch reads as bytes: request per node, reply straight into row JSON.

Why native: through the official Python client a 32-row lookup cost about 80 µs of CPU
in the client (a Python result object per record) and 40 µs more turning its bins into
row JSON, where a whole memory-tier request costs about 50 µs. Here the digests are
hashed, the keys grouped per node and each node's request packed in one pass, and a
reply is walked once, each record's bins written as the row JSON the memory tier would
hold (names sorted, Go's widened float32 doubles narrowed, as ``aerospike._row_json``
builds it from the client's bins).

Wire facts used (Aerospike's public protocol, as its clients speak it):

- a message is an 8-byte proto header (version 2, type 3 = AS_MSG, 48-bit size, big
  endian) and a 22-byte AS_MSG header: header size (22), info1, info2, info3, unused,
  result code, generation (4), record void time (4, seconds since 2010-01-01; 0: never
  expires), transaction ttl (4: the timeout in a request, the batch index in a batch
  reply), field count (2), op count (2); then fields (size (4) counting the type byte,
  type (1), data) and ops (size (4) counting what follows, op, particle type, version,
  name length, name, value);
- a batch read is one message with info1 BATCH and one BATCH_INDEX field (41): key
  count (4), flags (1), then per key its index (4) and digest (20), followed by a full
  entry (type 2, info1 READ|GET_ALL, info2, info3, field count 2, op count 0, namespace
  and set fields) for the first key and "repeat the previous" (1) for the others;
- the reply is a stream of messages, one per key (result 0 found, 2 not found) with the
  key's batch index, ending with a message whose info3 has LAST (its result code is
  the batch's);
- a digest is RIPEMD-160 of set name, the key's particle type (3, a string) and the
  key's UTF-8; its first two bytes, little endian, modulo 4096 are the partition. The
  official Python client passes set and key as C strings, so both end at a NUL byte for
  it: the digests here do the same, to find what it wrote.

Particles decoded natively: integer, double, string, and lists of integers, doubles and
strings (msgpack, strings with their particle type byte in front). Anything else (maps,
blobs, booleans, nested lists, a ``dictHash`` that is not an integer, a string that is not
UTF-8) sends the row to ``fallback``: the caller reads it through the official client,
so an unusual value costs a round trip, never a wrong answer.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport atoi, strtod
from libc.string cimport memchr, memcmp, memcpy, strchr, strlen

from mly._native.keybytes cimport key_bytes as _key_bytes

cdef extern from "Python.h":
    Py_ssize_t PyDict_GET_SIZE(object d)
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* ptype) except NULL
    int Py_DTSF_ADD_DOT_0
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    void PyErr_Clear()

cdef extern from *:
    """
    /* RIPEMD-160 (Dobbertin, Bosselaers, Preneel), over one contiguous message. */
    static const unsigned char MLY_RMD_RL[80] = {
        0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15, 7,4,13,1,10,6,15,3,12,0,9,5,2,14,11,8,
        3,10,14,4,9,15,8,1,2,7,0,6,13,11,5,12, 1,9,11,10,0,8,12,4,13,3,7,15,14,5,6,2,
        4,0,5,9,7,12,2,10,14,1,3,8,11,6,15,13};
    static const unsigned char MLY_RMD_RR[80] = {
        5,14,7,0,9,2,11,4,13,6,15,8,1,10,3,12, 6,11,3,7,0,13,5,10,14,15,8,12,4,9,1,2,
        15,5,1,3,7,14,6,9,11,8,12,2,10,0,4,13, 8,6,4,1,3,11,15,0,5,12,2,13,9,7,10,14,
        12,15,10,4,1,5,8,7,6,2,13,14,0,3,9,11};
    static const unsigned char MLY_RMD_SL[80] = {
        11,14,15,12,5,8,7,9,11,13,14,15,6,7,9,8, 7,6,8,13,11,9,7,15,7,12,15,9,11,7,13,12,
        11,13,6,7,14,9,13,15,14,8,13,6,5,12,7,5, 11,12,14,15,14,15,9,8,9,14,5,6,8,6,5,12,
        9,15,5,11,6,8,13,12,5,12,13,14,11,8,5,6};
    static const unsigned char MLY_RMD_SR[80] = {
        8,9,9,11,13,15,15,5,7,7,8,11,14,14,12,6, 9,13,15,7,12,8,9,11,7,7,12,7,6,15,13,11,
        9,7,15,11,8,6,6,14,12,13,5,14,13,13,7,5, 15,5,8,11,14,14,6,14,6,9,12,9,12,5,15,8,
        8,5,12,9,12,5,14,6,8,13,6,5,15,13,11,11};
    static const unsigned int MLY_RMD_KL[5] = {0x00000000u, 0x5A827999u, 0x6ED9EBA1u, 0x8F1BBCDCu, 0xA953FD4Eu};
    static const unsigned int MLY_RMD_KR[5] = {0x50A28BE6u, 0x5C4DD124u, 0x6D703EF3u, 0x7A6D76E9u, 0x00000000u};

    #define MLY_ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

    static inline unsigned int mly_rmd_f(int j, unsigned int x, unsigned int y, unsigned int z) {
        if (j < 16) return x ^ y ^ z;
        if (j < 32) return (x & y) | (~x & z);
        if (j < 48) return (x | ~y) ^ z;
        if (j < 64) return (x & z) | (y & ~z);
        return x ^ (y | ~z);
    }

    static void mly_rmd_block(unsigned int h[5], const unsigned char* p) {
        unsigned int X[16], al, bl, cl, dl, el, ar, br, cr, dr, er, t;
        int j;
        for (j = 0; j < 16; j++)
            X[j] = (unsigned int)p[4*j] | ((unsigned int)p[4*j+1] << 8) | ((unsigned int)p[4*j+2] << 16)
                   | ((unsigned int)p[4*j+3] << 24);
        al = ar = h[0]; bl = br = h[1]; cl = cr = h[2]; dl = dr = h[3]; el = er = h[4];
        for (j = 0; j < 80; j++) {
            t = al + mly_rmd_f(j, bl, cl, dl) + X[MLY_RMD_RL[j]] + MLY_RMD_KL[j >> 4];
            t = MLY_ROL(t, MLY_RMD_SL[j]) + el;
            al = el; el = dl; dl = MLY_ROL(cl, 10); cl = bl; bl = t;
            t = ar + mly_rmd_f(79 - j, br, cr, dr) + X[MLY_RMD_RR[j]] + MLY_RMD_KR[j >> 4];
            t = MLY_ROL(t, MLY_RMD_SR[j]) + er;
            ar = er; er = dr; dr = MLY_ROL(cr, 10); cr = br; br = t;
        }
        t = h[1] + cl + dr;
        h[1] = h[2] + dl + er;
        h[2] = h[3] + el + ar;
        h[3] = h[4] + al + br;
        h[4] = h[0] + bl + cr;
        h[0] = t;
    }

    static void mly_ripemd160(const unsigned char* msg, size_t n, unsigned char out[20]) {
        unsigned int h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
        unsigned char tail[128];
        size_t full = n & ~(size_t)63, rest = n - full, i, tail_len;
        unsigned long long bits = (unsigned long long)n * 8;
        for (i = 0; i < full; i += 64) mly_rmd_block(h, msg + i);
        for (i = 0; i < rest; i++) tail[i] = msg[full + i];
        tail[rest] = 0x80;
        tail_len = rest + 1 <= 56 ? 64 : 128;
        for (i = rest + 1; i < tail_len - 8; i++) tail[i] = 0;
        for (i = 0; i < 8; i++) tail[tail_len - 8 + i] = (unsigned char)(bits >> (8 * i));
        mly_rmd_block(h, tail);
        if (tail_len == 128) mly_rmd_block(h, tail + 64);
        for (i = 0; i < 5; i++) {
            out[4*i] = (unsigned char)h[i]; out[4*i+1] = (unsigned char)(h[i] >> 8);
            out[4*i+2] = (unsigned char)(h[i] >> 16); out[4*i+3] = (unsigned char)(h[i] >> 24);
        }
    }

    /* A double as the float32 it came from: 1 when it is one (Python's struct "<f" would pack
       it without overflow and unpack it unchanged). Guards the out-of-range cast. */
    static inline int mly_is_float32(double v, float* f) {
        if (!(v == v) || v > 3.4028234663852886e38 || v < -3.4028234663852886e38) return 0;
        *f = (float)v;
        return (double)*f == v;
    }
    static inline int mly_same_float32(double s, float f) {
        float g;
        if (!(s == s) || s > 3.4028235677973366e38 || s < -3.4028235677973366e38) return 0;
        g = (float)s;
        return memcmp(&g, &f, sizeof(float)) == 0;
    }
    """
    void mly_ripemd160(const unsigned char* msg, size_t n, unsigned char* out) noexcept nogil
    int mly_is_float32(double v, float* f) noexcept nogil
    int mly_same_float32(double s, float f) noexcept nogil

DEF _PARTITIONS = 4096
DEF _NO_OWNER = 65535
DEF _PROTO_HEADER = 8
DEF _MSG_HEADER = 22
DEF _MAX_REPLY = 64 * 1024 * 1024
DEF _CITRUSLEAF_EPOCH = 1262304000
DEF _MAX_BINS = 512
DEF _NEVER_MS = 4294967295000
DEF _STALE = -1

PARTITIONS = _PARTITIONS
NO_OWNER = _NO_OWNER
NEVER_EXPIRES_MS = _NEVER_MS
"""``remaining_ms`` of a record that never expires (void time 0): the TTL the official client
reports for it (``0xFFFFFFFF`` s), in milliseconds."""
STALE = _STALE
"""``remaining_ms`` of an entry refused for its dictionary hash or its age."""
RESULT_OK = 0
RESULT_NOT_FOUND = 2


# ------------------------------------------------------------------ digests and requests

cdef inline Py_ssize_t _c_length(const char* s, Py_ssize_t n) noexcept nogil:
    """Bytes before the first NUL: the official client passes names and keys as C strings."""
    cdef const void* nul = memchr(s, 0, n)
    return n if nul is NULL else <const char*>nul - s


cdef void _digest(const char* set_name, Py_ssize_t set_len, const char* key, Py_ssize_t key_len,
                  unsigned char* scratch, unsigned char* out) noexcept nogil:
    set_len = _c_length(set_name, set_len)
    key_len = _c_length(key, key_len)
    memcpy(scratch, set_name, set_len)
    scratch[set_len] = 3  # the key's particle type: a string
    memcpy(scratch + set_len + 1, key, key_len)
    mly_ripemd160(scratch, set_len + 1 + key_len, out)


def digest(bytes set_name, key) -> bytes:
    """The record digest of ``key`` (a string user key) in set ``set_name``, as Aerospike's clients compute it."""
    cdef Py_ssize_t klen
    cdef const char* kp = _key_bytes(key, &klen)
    cdef Py_ssize_t slen = PyBytes_GET_SIZE(set_name)
    scratch = PyBytes_FromStringAndSize(NULL, slen + 1 + klen)
    out = PyBytes_FromStringAndSize(NULL, 20)
    _digest(PyBytes_AS_STRING(set_name), slen, kp, klen, <unsigned char*>PyBytes_AS_STRING(scratch),
            <unsigned char*>PyBytes_AS_STRING(out))
    return out


def partition_id(bytes digest) -> int:
    """The partition of a record: its digest's first two bytes, little endian, modulo 4096."""
    cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(digest)
    if PyBytes_GET_SIZE(digest) != 20:
        raise ValueError("a digest has 20 bytes")
    return (d[0] | (d[1] << 8)) & (_PARTITIONS - 1)


cdef inline void _put_be32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>(v >> 24)
    p[1] = <unsigned char>(v >> 16)
    p[2] = <unsigned char>(v >> 8)
    p[3] = <unsigned char>v


cdef inline uint32_t _get_be32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint64_t _get_be(const unsigned char* p, Py_ssize_t length) noexcept nogil:
    """A big-endian unsigned integer of ``length`` (at most 8) bytes."""
    cdef uint64_t u = 0
    cdef Py_ssize_t j
    for j in range(length):
        u = (u << 8) | p[j]
    return u


cdef inline uint64_t _get_be64(const unsigned char* p) noexcept nogil:
    return (<uint64_t>_get_be32(p) << 32) | _get_be32(p + 4)


cdef bytes _pack_batch(bytes namespace, bytes set_name, const unsigned char* digests, const uint32_t* positions,
                       Py_ssize_t n, uint32_t timeout_ms):
    """One batch-index read of the keys at ``positions`` (digest ``i`` at ``digests + 20 * i``); the batch
    index sent is the key's position in the lookup, so a reply lands in place."""
    cdef Py_ssize_t i, ns_len = PyBytes_GET_SIZE(namespace)
    cdef Py_ssize_t set_len = PyBytes_GET_SIZE(set_name)
    cdef Py_ssize_t entry = 8 + 5 + ns_len + 5 + set_len
    cdef Py_ssize_t field = 4 + 1 + n * 24 + entry + (n - 1)
    cdef Py_ssize_t size = _PROTO_HEADER + _MSG_HEADER + 5 + field
    cdef uint32_t position
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef uint64_t proto = (<uint64_t>2 << 56) | (<uint64_t>3 << 48) | <uint64_t>(size - _PROTO_HEADER)
    _put_be32(p, <uint32_t>(proto >> 32))
    _put_be32(p + 4, <uint32_t>proto)
    p += _PROTO_HEADER
    p[0] = _MSG_HEADER
    p[1] = 8  # info1: BATCH
    for i in range(2, 18):
        p[i] = 0
    _put_be32(p + 14, timeout_ms)
    p[18] = 0
    p[19] = 1  # one field
    p[20] = 0
    p[21] = 0  # no ops
    p += _MSG_HEADER
    _put_be32(p, <uint32_t>(field + 1))
    p[4] = 41  # BATCH_INDEX
    _put_be32(p + 5, <uint32_t>n)
    p[9] = 1 | 4  # flags: allow inline, respond for every key
    p += 10
    for i in range(n):
        position = positions[i]
        _put_be32(p, position)
        memcpy(p + 4, digests + 20 * <Py_ssize_t>position, 20)
        p += 24
        if i:
            p[0] = 1  # same namespace, set and reads as the previous key
            p += 1
            continue
        p[0] = 2  # a full entry
        p[1] = 1 | 2  # info1: READ, GET_ALL
        p[2] = 0
        p[3] = 0
        p[4] = 0
        p[5] = 2  # namespace and set
        p[6] = 0
        p[7] = 0  # no ops: every bin
        p += 8
        _put_be32(p, <uint32_t>(ns_len + 1))
        p[4] = 0  # NAMESPACE
        memcpy(p + 5, PyBytes_AS_STRING(namespace), ns_len)
        p += 5 + ns_len
        _put_be32(p, <uint32_t>(set_len + 1))
        p[4] = 1  # TABLE (set)
        memcpy(p + 5, PyBytes_AS_STRING(set_name), set_len)
        p += 5 + set_len
    return out


def route(bytes namespace, bytes set_name, list keys, const unsigned short[:] owners, uint32_t timeout_ms,
          list only=None, dict digests_of=None, Py_ssize_t remember=0):
    """Keys grouped by the node that owns their partition (``owners[partition]``, 65535: none), each
    group packed as one batch read: ``[(owner, packed, [key position, ...]), ...]`` in the order owners
    first appear (a group of owner 65535 has no request: ``b""``). ``only``: the positions to route
    (default every key), e.g. those of a node that failed, routed again over the replicas' table.

    ``digests_of``: digests of keys seen before (a digest of a 60-byte key costs about 0.5 µs, a
    dictionary hit a tenth of that, and hot keys are what a cache sees most); new ones are added
    while it holds fewer than ``remember``."""
    if owners.shape[0] != _PARTITIONS:
        raise ValueError("owners must have one entry per partition (4096)")
    cdef Py_ssize_t n = PyList_GET_SIZE(keys), m, i, j, g, klen, longest = 0, groups = 0, members
    cdef Py_ssize_t slen = PyBytes_GET_SIZE(set_name)
    cdef const char* kp
    cdef unsigned char* d
    cdef uint32_t position
    cdef PyObject* known
    m = n if only is None else PyList_GET_SIZE(only)
    cdef bytes digests = PyBytes_FromStringAndSize(NULL, 20 * n if n else 1)
    d = <unsigned char*>PyBytes_AS_STRING(digests)
    for i in range(n):
        _key_bytes(<object>PyList_GET_ITEM(keys, i), &klen)
        if klen > longest:
            longest = klen
    cdef bytes scratch = PyBytes_FromStringAndSize(NULL, slen + 1 + longest)
    cdef uint32_t* chosen = <uint32_t*>PyMem_Malloc(sizeof(uint32_t) * (2 * m + 1))
    cdef unsigned short* key_owner = <unsigned short*>PyMem_Malloc(sizeof(unsigned short) * (2 * m + 1))
    if chosen is NULL or key_owner is NULL:
        PyMem_Free(chosen)
        PyMem_Free(key_owner)
        raise MemoryError()
    cdef uint32_t* group_positions = chosen + m
    cdef unsigned short* group_owner = key_owner + m
    out = []
    try:
        for j in range(m):
            i = j if only is None else <Py_ssize_t>(<object>PyList_GET_ITEM(only, j))
            if i < 0 or i >= n:
                raise IndexError(f"key position {i} out of range")
            chosen[j] = <uint32_t>i
            key = <object>PyList_GET_ITEM(keys, i)
            known = PyDict_GetItem(digests_of, key) if digests_of is not None else NULL
            if known is not NULL and PyBytes_GET_SIZE(<object>known) == 20:
                memcpy(d + 20 * i, PyBytes_AS_STRING(<object>known), 20)
            else:
                kp = _key_bytes(key, &klen)
                _digest(PyBytes_AS_STRING(set_name), slen, kp, klen, <unsigned char*>PyBytes_AS_STRING(scratch),
                        d + 20 * i)
                if digests_of is not None and PyDict_GET_SIZE(digests_of) < remember:
                    digests_of[key] = PyBytes_FromStringAndSize(<const char*>d + 20 * i, 20)
            key_owner[j] = owners[(d[20 * i] | (d[20 * i + 1] << 8)) & (_PARTITIONS - 1)]
            for g in range(groups):
                if group_owner[g] == key_owner[j]:
                    break
            else:
                group_owner[groups] = key_owner[j]
                groups += 1
        for g in range(groups):
            members = 0
            for j in range(m):
                if key_owner[j] == group_owner[g]:
                    group_positions[members] = chosen[j]
                    members += 1
            positions = [group_positions[j] for j in range(members)]
            if group_owner[g] == _NO_OWNER:
                out.append((group_owner[g], b"", positions))
            else:
                out.append((group_owner[g], _pack_batch(namespace, set_name, d, group_positions, members, timeout_ms),
                            positions))
        return out
    finally:
        PyMem_Free(chosen)
        PyMem_Free(key_owner)


# ------------------------------------------------------------------ reply framing

def reply_end(const unsigned char[:] data) -> int:
    """Bytes at the start of ``data`` that make up one whole batch reply (up to and including the
    proto holding its LAST message), or -1 while more must arrive. A stream that is not a batch
    reply raises ``ValueError``: the connection is out of step and must be dropped."""
    cdef Py_ssize_t n = data.shape[0], pos = 0, end, q
    cdef const unsigned char* p = &data[0] if n else NULL
    cdef uint64_t size
    cdef uint32_t fields, ops, k, length
    while True:
        if n - pos < _PROTO_HEADER:
            return -1
        if p[pos] != 2 or p[pos + 1] != 3:
            raise ValueError(f"not an AS_MSG reply (version {p[pos]}, type {p[pos + 1]})")
        size = _get_be64(p + pos) & 0xFFFFFFFFFFFF
        if size > _MAX_REPLY:
            raise ValueError(f"a reply of {size} bytes")
        end = pos + _PROTO_HEADER + <Py_ssize_t>size
        if end > n:
            return -1
        q = pos + _PROTO_HEADER
        while q < end:  # the messages of this proto: does one say LAST?
            if end - q < _MSG_HEADER or p[q] != _MSG_HEADER:
                raise ValueError("a truncated or malformed message in a batch reply")
            if p[q + 3] & 1:
                if q + _MSG_HEADER != end:
                    raise ValueError("data after the last message of a batch reply")
                return end
            fields = (p[q + 18] << 8) | p[q + 19]
            ops = (p[q + 20] << 8) | p[q + 21]
            q += _MSG_HEADER
            for k in range(fields + ops):
                if end - q < 4:
                    raise ValueError("a truncated field or bin in a batch reply")
                length = _get_be32(p + q)
                if <Py_ssize_t>length > end - q - 4:
                    raise ValueError("a truncated field or bin in a batch reply")
                q += 4 + length
        pos = end


# ------------------------------------------------------------------ row JSON

cdef struct _Out:
    char* data
    Py_ssize_t length
    Py_ssize_t capacity


cdef int _reserve(_Out* out, Py_ssize_t extra) except -1:
    cdef Py_ssize_t want = out.length + extra
    cdef Py_ssize_t capacity = out.capacity
    cdef char* grown
    if want <= capacity:
        return 0
    while capacity < want:
        capacity = capacity * 2 if capacity else 1024
    grown = <char*>PyMem_Realloc(out.data, capacity)
    if grown is NULL:
        raise MemoryError()
    out.data = grown
    out.capacity = capacity
    return 0


cdef inline int _put(_Out* out, const char* data, Py_ssize_t n) except -1:
    _reserve(out, n)
    memcpy(out.data + out.length, data, n)
    out.length += n
    return 0


cdef inline int _put_char(_Out* out, char c) except -1:
    _reserve(out, 1)
    out.data[out.length] = c
    out.length += 1
    return 0


cdef int _put_uint64(_Out* out, uint64_t v, bint negative) except -1:
    cdef char digits[24]
    cdef int d = 0
    while True:
        digits[d] = <char>(48 + v % 10)
        d += 1
        v //= 10
        if v == 0:
            break
    _reserve(out, d + 1)
    if negative:
        out.data[out.length] = b'-'
        out.length += 1
    while d:
        d -= 1
        out.data[out.length] = digits[d]
        out.length += 1
    return 0


cdef inline int _put_int64(_Out* out, int64_t v) except -1:
    if v < 0:
        return _put_uint64(out, <uint64_t>0 - <uint64_t>v, True)
    return _put_uint64(out, <uint64_t>v, False)


cdef int _put_double(_Out* out, double v) except -1:
    """``v`` as orjson writes it: Python's shortest digits, decimal for exponents -5 to 15,
    otherwise ``d.ddde±x`` with no zero padding; NaN and infinities as ``null``."""
    cdef char* text
    cdef char* e
    cdef int exponent, n_digits
    cdef char digits[32]
    cdef const char* m
    if not isfinite(v):
        return _put(out, b"null", 4)
    text = PyOS_double_to_string(v, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        e = strchr(text, b'e')
        if e is NULL:
            _put(out, text, strlen(text))
            return 0
        exponent = atoi(e + 1)
        if exponent != -5:
            _put(out, text, e - text)
            _put_char(out, b'e')
            if exponent > 0:
                _put_char(out, b'+')
            _put_int64(out, exponent)
            return 0
        m = text  # 1e-05 -> 0.00001, 2.5e-05 -> 0.000025
        if m[0] == b'-':
            _put_char(out, b'-')
            m += 1
        n_digits = 0
        while m < e:
            if m[0] != b'.':
                digits[n_digits] = m[0]
                n_digits += 1
            m += 1
        _put(out, b"0.0000", 6)
        _put(out, digits, n_digits)
        return 0
    finally:
        PyMem_Free(text)


cdef enum:
    _TEXTS = 16384  # a power of two: the slot is the top bits of a multiplicative hash (50 bits shifted out)
    _TEXT_MAX = 32  # longer than any double's text


cdef uint64_t _text_bits[_TEXTS]
cdef unsigned char _text_length[_TEXTS]  # 0: the slot is empty
cdef char _text[_TEXTS][_TEXT_MAX]


cdef int _put_number(_Out* out, double v) except -1:
    """``_put_double(out, _narrow(v))``, the text of recent values remembered by their bits.

    Why: finding a double's shortest digits (Python's ``repr``) costs several hundred nanoseconds,
    and as many as a quarter of the CPU of a lookup answered from Aerospike alone went there, while
    the rows read most are the same records with the same predictions again. One slot per hash of
    the bits, overwritten by the next value hashing there: a slot answers only for the exact bits it
    holds. Called with the GIL held (no other thread runs this meanwhile)."""
    cdef uint64_t bits
    cdef Py_ssize_t slot, start, n
    memcpy(&bits, &v, 8)
    slot = <Py_ssize_t>((bits * <uint64_t>0x9E3779B97F4A7C15) >> 50)
    n = _text_length[slot]
    if n and _text_bits[slot] == bits:
        return _put(out, _text[slot], n)
    start = out.length
    _put_double(out, _narrow(v))
    n = out.length - start
    if n <= _TEXT_MAX:
        memcpy(_text[slot], out.data + start, n)
        _text_bits[slot] = bits
        _text_length[slot] = <unsigned char>n
    return 0


cdef double _narrow(double v) noexcept:
    """``aerospike.narrow_float`` in C: a double that is exactly a float32 becomes the double of
    that float32's shortest text (Go's widened ``float32(0.3)`` reads as 0.3)."""
    cdef float f
    cdef char text[40]
    cdef int digits
    cdef double shortest
    if not isfinite(v) or not mly_is_float32(v, &f):
        return v
    for digits in range(1, 10):
        snprintf(text, sizeof(text), b"%.*g", digits, v)
        shortest = strtod(text, NULL)
        if mly_same_float32(shortest, f):
            return shortest
    return v


cdef const char* _HEX = b"0123456789abcdef"


cdef int _put_string(_Out* out, const unsigned char* s, Py_ssize_t n) except -1:
    """A JSON string as orjson escapes it: quote, backslash and control characters only."""
    cdef Py_ssize_t i, start = 0
    cdef unsigned char c
    _reserve(out, n + 2)
    out.data[out.length] = b'"'
    out.length += 1
    for i in range(n):
        c = s[i]
        if c >= 0x20 and c != b'"' and c != b'\\':
            continue
        _put(out, <const char*>s + start, i - start)
        start = i + 1
        if c == b'"':
            _put(out, b'\\"', 2)
        elif c == b'\\':
            _put(out, b'\\\\', 2)
        elif c == b'\n':
            _put(out, b'\\n', 2)
        elif c == b'\r':
            _put(out, b'\\r', 2)
        elif c == b'\t':
            _put(out, b'\\t', 2)
        elif c == 8:
            _put(out, b'\\b', 2)
        elif c == 12:
            _put(out, b'\\f', 2)
        else:
            _reserve(out, 6)
            memcpy(out.data + out.length, b"\\u00", 4)
            out.data[out.length + 4] = _HEX[c >> 4]
            out.data[out.length + 5] = _HEX[c & 15]
            out.length += 6
    _put(out, <const char*>s + start, n - start)
    _put_char(out, b'"')
    return 0


cdef bint _utf8(const unsigned char* s, Py_ssize_t n) except -1:
    """True when ``s`` is text Python would decode (strict UTF-8); ASCII needs no decoder."""
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] >= 0x80:
            try:
                PyUnicode_DecodeUTF8(<const char*>s, n, NULL)
            except UnicodeDecodeError:
                return False
            return True
    return True


cdef int _put_list(_Out* out, const unsigned char* p, Py_ssize_t n) except -1:
    """A list particle (msgpack) of integers, doubles and strings as JSON; -2 (nothing written
    that counts) for anything else."""
    cdef Py_ssize_t count, i, q = 0, length
    cdef unsigned char t
    cdef uint64_t u
    cdef double v
    cdef float f32
    cdef uint32_t bits
    cdef uint64_t bits64
    if n < 1:
        return -2
    t = p[0]
    if 0x90 <= t <= 0x9f:
        count = t & 15
        q = 1
    elif t == 0xdc and n >= 3:
        count = (p[1] << 8) | p[2]
        q = 3
    elif t == 0xdd and n >= 5:
        count = _get_be32(p + 1)
        q = 5
    else:
        return -2  # an ordered list's flags (ext) or not a list
    _put_char(out, b'[')
    for i in range(count):
        if i:
            _put_char(out, b',')
        if q >= n:
            return -2
        t = p[q]
        q += 1
        if t <= 0x7f:
            _put_int64(out, t)
            continue
        if t >= 0xe0:
            _put_int64(out, <int64_t>(<signed char>t))
            continue
        if 0xa0 <= t <= 0xbf or 0xd9 <= t <= 0xdb:
            if t <= 0xbf:
                length = t & 31
            elif t == 0xd9:
                if q + 1 > n:
                    return -2
                length = p[q]
                q += 1
            elif t == 0xda:
                if q + 2 > n:
                    return -2
                length = (p[q] << 8) | p[q + 1]
                q += 2
            else:
                if q + 4 > n:
                    return -2
                length = _get_be32(p + q)
                q += 4
            if length < 1 or q + length > n or p[q] != 3:  # a string has its particle type first
                return -2
            if not _utf8(p + q + 1, length - 1):
                return -2
            _put_string(out, p + q + 1, length - 1)
            q += length
            continue
        if t == 0xcb:
            if q + 8 > n:
                return -2
            bits64 = _get_be64(p + q)
            memcpy(&v, &bits64, 8)
            q += 8
            _put_number(out, v)
            continue
        if t == 0xca:
            if q + 4 > n:
                return -2
            bits = _get_be32(p + q)
            memcpy(&f32, &bits, 4)
            q += 4
            _put_number(out, <double>f32)
            continue
        if 0xcc <= t <= 0xcf:
            length = 1 << (t - 0xcc)
            if q + length > n:
                return -2
            u = _get_be(p + q, length)
            q += length
            if u > <uint64_t>0x7FFFFFFFFFFFFFFF:
                return -2
            _put_uint64(out, u, False)
            continue
        if 0xd0 <= t <= 0xd3:
            length = 1 << (t - 0xd0)
            if q + length > n:
                return -2
            u = _get_be(p + q, length)
            q += length
            if length < 8 and u >> (8 * length - 1):  # sign-extend
                u |= ~((<uint64_t>1 << (8 * length)) - 1)
            _put_int64(out, <int64_t>u)
            continue
        return -2  # nil, booleans, blobs, nested lists and maps, extensions: the client decodes them
    if q != n:
        return -2
    _put_char(out, b']')
    return 0


cdef struct _Bin:
    const unsigned char* name
    Py_ssize_t name_len
    int particle
    const unsigned char* value
    Py_ssize_t value_len


cdef inline bint _name_before(_Bin* a, _Bin* b) noexcept nogil:
    cdef Py_ssize_t n = a.name_len if a.name_len < b.name_len else b.name_len
    cdef int c = memcmp(a.name, b.name, n)
    return c < 0 or (c == 0 and a.name_len < b.name_len)


cdef int _put_row(_Out* out, _Bin* bins, int count) except -1:
    """The row JSON of one record's bins (``dictHash`` already taken out); -2: not natively."""
    cdef int i, j
    cdef _Bin moving
    cdef double v
    cdef uint64_t bits64
    for i in range(1, count):  # names sorted as Python sorts str (UTF-8 bytes sort the same)
        moving = bins[i]
        j = i - 1
        while j >= 0 and _name_before(&moving, &bins[j]):
            bins[j + 1] = bins[j]
            j -= 1
        bins[j + 1] = moving
    _put_char(out, b'{')
    for i in range(count):
        if i:
            _put_char(out, b',')
        if not _utf8(bins[i].name, bins[i].name_len):
            return -2
        _put_string(out, bins[i].name, bins[i].name_len)
        _put_char(out, b':')
        if bins[i].particle == 1 and bins[i].value_len == 8:
            _put_int64(out, <int64_t>_get_be64(bins[i].value))
        elif bins[i].particle == 2 and bins[i].value_len == 8:
            bits64 = _get_be64(bins[i].value)
            memcpy(&v, &bits64, 8)
            _put_number(out, v)
        elif bins[i].particle == 3:
            if not _utf8(bins[i].value, bins[i].value_len):
                return -2
            _put_string(out, bins[i].value, bins[i].value_len)
        elif bins[i].particle == 20:
            if _put_list(out, bins[i].value, bins[i].value_len) == -2:
                return -2
        else:
            return -2
    _put_char(out, b'}')
    return 0


def decode_reply(bytes reply, list rows, list remaining, list fallback, int64_t dict_hash, int64_t now_ms,
                 int64_t min_expires_ms):
    """One node's whole batch reply (``reply_end`` bytes) into the lookup's lists, by batch index.

    ``rows[i]`` gets the row JSON of a hit of ``dict_hash`` whose entry expires after
    ``min_expires_ms``, ``remaining[i]`` the time it has left (``NEVER_EXPIRES_MS`` for a record
    without expiry; ``STALE`` for an entry refused for its hash or age); ``fallback`` gets the positions of records to read through the official client.
    Returns ``(stale, result)``: entries refused for their hash or age, and the batch's result
    code (0, or why the node refused the whole batch)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(reply)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(reply), pos = 0, end, q, rows_n = PyList_GET_SIZE(rows)
    cdef Py_ssize_t mark
    cdef uint32_t fields, ops, k, length, void_time, index
    cdef int result, count, stale = 0, i
    cdef int64_t now_s = now_ms // 1000 - _CITRUSLEAF_EPOCH, ttl_s, left_ms, hash_value
    cdef bint has_hash, hash_ok
    cdef _Bin bins[_MAX_BINS]
    cdef _Out out
    out.data = NULL
    out.length = 0
    out.capacity = 0
    try:
        while pos < n:
            if n - pos < _PROTO_HEADER:
                raise ValueError("a truncated batch reply")
            end = pos + _PROTO_HEADER + <Py_ssize_t>(_get_be64(p + pos) & 0xFFFFFFFFFFFF)
            if end > n:
                raise ValueError("a truncated batch reply")
            q = pos + _PROTO_HEADER
            while q < end:
                if end - q < _MSG_HEADER:
                    raise ValueError("a truncated batch reply")
                result = p[q + 5]
                if p[q + 3] & 1:  # LAST: the batch's own result
                    return stale, result
                void_time = _get_be32(p + q + 10)
                index = _get_be32(p + q + 14)
                fields = (p[q + 18] << 8) | p[q + 19]
                ops = (p[q + 20] << 8) | p[q + 21]
                q += _MSG_HEADER
                if index >= <uint32_t>rows_n:
                    raise ValueError(f"batch index {index} of a lookup of {rows_n} keys")
                for k in range(fields):  # a key or digest field, if any: not needed
                    if q + 4 > end or q + 4 + <Py_ssize_t>_get_be32(p + q) > end:
                        raise ValueError("a truncated field in a batch reply")
                    q += 4 + <Py_ssize_t>_get_be32(p + q)
                count = 0
                has_hash = False
                hash_ok = True
                hash_value = 0
                for k in range(ops):
                    if q + 8 > end:
                        raise ValueError("a truncated bin in a batch reply")
                    length = _get_be32(p + q)
                    if length < 4 or q + 4 + <Py_ssize_t>length > end or p[q + 7] > length - 4:
                        raise ValueError("a malformed bin in a batch reply")
                    if count == _MAX_BINS:
                        hash_ok = False
                    elif p[q + 7] == 8 and memcmp(p + q + 8, b"dictHash", 8) == 0:
                        has_hash = True
                        if p[q + 5] == 1 and length - 4 - 8 == 8:
                            hash_value = <int64_t>_get_be64(p + q + 16)
                        elif p[q + 5] != 0:
                            hash_ok = False  # a dictHash of another type: the client's reading
                    else:
                        bins[count].name = p + q + 8
                        bins[count].name_len = p[q + 7]
                        bins[count].particle = p[q + 5]
                        bins[count].value = p + q + 8 + p[q + 7]
                        bins[count].value_len = length - 4 - p[q + 7]
                        count += 1
                    q += 4 + length
                if result != 0:  # not found, or a per-key error: a miss, as the client reads it
                    continue
                if not hash_ok:
                    fallback.append(index)
                    continue
                if count == 0 and hash_value == 0:
                    continue  # a record without bins: a miss
                if void_time == 0:
                    ttl_s = 0xFFFFFFFF
                elif void_time > now_s:
                    ttl_s = void_time - now_s
                else:
                    ttl_s = 1  # expired, not yet removed: the client reports 1 s
                left_ms = ttl_s * 1000
                if hash_value != dict_hash or (min_expires_ms and (
                        ttl_s == 0xFFFFFFFF or now_ms + left_ms < min_expires_ms)):
                    stale += 1
                    remaining[index] = _STALE
                    continue
                out.length = 0
                if _put_row(&out, bins, count) == -2:
                    fallback.append(index)
                    continue
                rows[index] = PyBytes_FromStringAndSize(out.data, out.length)
                remaining[index] = left_ms
            pos = end
        raise ValueError("a batch reply without its last message")
    finally:
        PyMem_Free(out.data)


def json_double(double v) -> bytes:
    """A double as the row JSON writes it (narrowed first when it is exactly a float32), through the
    remembered texts as a record's doubles go: for tests."""
    cdef _Out out
    out.data = NULL
    out.length = 0
    out.capacity = 0
    try:
        _put_number(&out, v)
        return PyBytes_FromStringAndSize(out.data, out.length)
    finally:
        PyMem_Free(out.data)
