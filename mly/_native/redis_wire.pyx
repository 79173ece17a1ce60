# cython: language_level=3, boundscheck=False, wraparound=False
"""Redis commands and cache entries as bytes, without a Python object per key.

Why native: a 32-row lookup against Redis used to cost about 0.8 ms of CPU in the
client library alone (two commands per key, each packed and parsed in Python), which
made a shared Redis tier 20x slower than the memory tier. One ``MGET`` per lookup,
packed here in one pass over the keys, and its replies split here into row JSON,
cost a few microseconds.

Entry layout (one Redis string per cache entry, written with ``SET key value PX ttl``):

====== ======= ==================================================================
offset  bytes  content
====== ======= ==================================================================
0       1      layout version, 1
1       8      dictionary hash the row was computed under, int64 little-endian
9       8      expiry time, milliseconds since the Unix epoch, int64 little-endian
17      rest   the row's JSON, exactly as the server answers it
====== ======= ==================================================================

The expiry time travels in the value because ``MGET`` does not return TTLs: a copy
of the entry into a faster tier keeps the time the entry has left.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

from mly._native.keybytes cimport key_bytes as _key_bytes

DEF _HEADER = 17
DEF _VERSION = 1

ENTRY_HEADER_BYTES = _HEADER
ENTRY_VERSION = _VERSION


cdef inline void _put_le64(char* p, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i] = <char>((v >> (8 * i)) & 0xff)


cdef inline uint64_t _get_le64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v |= (<uint64_t>p[i]) << (8 * i)
    return v


def pack_entry(bytes row_json, int64_t dict_hash, int64_t expires_at_ms) -> bytes:
    """The stored value of one entry (see module docstring)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(row_json)
    out = PyBytes_FromStringAndSize(NULL, _HEADER + n)
    cdef char* p = PyBytes_AS_STRING(out)
    p[0] = _VERSION
    _put_le64(p + 1, <uint64_t>dict_hash)
    _put_le64(p + 9, <uint64_t>expires_at_ms)
    memcpy(p + _HEADER, PyBytes_AS_STRING(row_json), n)
    return out


def unpack_entries(list values, int64_t dict_hash, int64_t now_ms, int64_t min_expires_ms):
    """Replies of ``MGET`` (or of one ``GET`` per key) -> ``(rows, remaining_ms, stale, foreign)``.

    ``rows[i]`` is the row JSON of ``values[i]``, or ``None`` when it is absent, expired by
    its own clock, computed under another dictionary hash, or expiring before
    ``min_expires_ms`` (written before the model was reloaded: see
    ``TieredCache.forget_older_entries``). ``remaining_ms[i]`` is the time a hit has left
    (0 for a miss). ``stale`` counts the entries refused for their hash or age, ``foreign``
    the values that are not entries of this layout (another program's string, an error).
    """
    cdef Py_ssize_t n = PyList_GET_SIZE(values), i, size
    cdef object value
    cdef const uint8_t* p
    cdef int64_t expires
    cdef int stale = 0, foreign = 0
    rows = [None] * n
    remaining = [0] * n
    for i in range(n):
        value = <object>PyList_GET_ITEM(values, i)
        if value is None:
            continue
        if type(value) is not bytes:
            foreign += 1
            continue
        size = PyBytes_GET_SIZE(value)
        p = <const uint8_t*>PyBytes_AS_STRING(value)
        if size <= _HEADER or p[0] != _VERSION:
            foreign += 1
            continue
        expires = <int64_t>_get_le64(p + 9)
        if <int64_t>_get_le64(p + 1) != dict_hash or expires < min_expires_ms:
            stale += 1
            continue
        if expires <= now_ms:
            continue
        rows[i] = PyBytes_FromStringAndSize(<const char*>p + _HEADER, size - _HEADER)
        remaining[i] = expires - now_ms
    return rows, remaining, stale, foreign


def entry_header(bytes value):
    """``(dict_hash, expires_at_ms)`` of one stored value, or ``None`` if it is not one."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(value)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(value)
    if size <= _HEADER or p[0] != _VERSION:
        return None
    return <int64_t>_get_le64(p + 1), <int64_t>_get_le64(p + 9)


cdef inline Py_ssize_t _bulk_size(Py_ssize_t n) noexcept nogil:
    """Bytes of ``$<n>\\r\\n<n bytes>\\r\\n``."""
    cdef Py_ssize_t digits = 1, m = n
    while m >= 10:
        m //= 10
        digits += 1
    return 1 + digits + 2 + n + 2


cdef inline char* _put_header(char* p, char kind, Py_ssize_t n) noexcept nogil:
    """``$<n>\r\n`` or ``*<n>\r\n`` (``n >= 0``) without printf's format parsing."""
    cdef char digits[24]
    cdef int d = 0
    p[0] = kind
    p += 1
    while True:
        digits[d] = <char>(48 + n % 10)
        d += 1
        n //= 10
        if n == 0:
            break
    while d:
        d -= 1
        p[0] = digits[d]
        p += 1
    p[0] = b'\r'
    p[1] = b'\n'
    return p + 2


cdef inline char* _put_bulk(char* p, const char* data, Py_ssize_t n) noexcept nogil:
    p = _put_header(p, b'$', n)
    memcpy(p, data, n)
    p += n
    p[0] = b'\r'
    p[1] = b'\n'
    return p + 2


cdef inline char* _put_count(char* p, Py_ssize_t n) noexcept nogil:
    return _put_header(p, b'*', n)


def pack_key_command(bytes command, bytes prefix, list keys, bint each=False) -> bytes:
    """``command prefix+key1 prefix+key2 ...`` in RESP, or with ``each`` one command per key
    (``GET k1``, ``GET k2``: a pipeline whose keys may live in different cluster slots).

    ``keys`` are ``str`` (their UTF-8 is used) or ``bytes``.
    """
    cdef Py_ssize_t n = PyList_GET_SIZE(keys), i, size = 0, klen
    cdef Py_ssize_t plen = PyBytes_GET_SIZE(prefix), clen = PyBytes_GET_SIZE(command)
    cdef const char* kp
    # Two passes: sizes, then bytes (the second does not encode a str again).
    for i in range(n):
        _key_bytes(<object>PyList_GET_ITEM(keys, i), &klen)
        size += _bulk_size(plen + klen)
    if each:
        size += n * (_bulk_size(clen) + 4 + 20)
    else:
        size += _bulk_size(clen) + 24
    buffer = PyBytes_FromStringAndSize(NULL, size)
    cdef char* start = PyBytes_AS_STRING(buffer)
    cdef char* p = start
    if not each:
        p = _put_count(p, n + 1)
        p = _put_bulk(p, PyBytes_AS_STRING(command), clen)
    for i in range(n):
        kp = _key_bytes(<object>PyList_GET_ITEM(keys, i), &klen)
        if each:
            p = _put_count(p, 2)
            p = _put_bulk(p, PyBytes_AS_STRING(command), clen)
        p = _put_header(p, b'$', plen + klen)
        memcpy(p, PyBytes_AS_STRING(prefix), plen)
        p += plen
        memcpy(p, kp, klen)
        p += klen
        p[0] = b'\r'
        p[1] = b'\n'
        p += 2
    return buffer[:p - start]

cdef unsigned short _CRC16[256]


cdef void _init_crc16() noexcept:
    cdef unsigned int i, j, crc
    for i in range(256):
        crc = i << 8
        for j in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        _CRC16[i] = crc & 0xffff


_init_crc16()


cdef inline unsigned int _crc16(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef unsigned int crc = 0
    cdef Py_ssize_t i
    for i in range(n):
        crc = ((crc << 8) & 0xffff) ^ _CRC16[((crc >> 8) ^ p[i]) & 0xff]
    return crc


cdef inline unsigned int _key_slot(const unsigned char* full, Py_ssize_t total) noexcept nogil:
    cdef Py_ssize_t j, open_at = -1, close_at = -1
    for j in range(total):
        if full[j] == b'{':
            open_at = j
            break
    if open_at >= 0:
        for j in range(open_at + 1, total):
            if full[j] == b'}':
                close_at = j
                break
        if close_at > open_at + 1:
            return _crc16(full + open_at + 1, close_at - open_at - 1) & 16383
    return _crc16(full, total) & 16383


def key_slots(bytes prefix, list keys) -> list:
    """The Redis Cluster hash slot of ``prefix + key`` for each key (CRC16 mod 16384, hash tags
    ``{...}`` honoured as Redis does: the first ``{`` and the first ``}`` after it)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(keys), i, klen, plen = PyBytes_GET_SIZE(prefix), total
    cdef const char* kp
    cdef bytearray buffer = bytearray(256)
    cdef unsigned char* full
    out = [0] * n
    for i in range(n):
        kp = _key_bytes(<object>PyList_GET_ITEM(keys, i), &klen)
        total = plen + klen
        if total > len(buffer):
            buffer = bytearray(total)
        full = <unsigned char*><char*>buffer
        memcpy(full, PyBytes_AS_STRING(prefix), plen)
        memcpy(full + plen, kp, klen)
        out[i] = _key_slot(full, total)
    return out


def split_by_owner(bytes command, bytes prefix, list keys, const unsigned short[:] owners):
    """Keys grouped by the node that owns their slot (``owners[slot]``, 65535: none), each group
    packed as one ``command`` per key: ``[(owner, packed, [key index, ...]), ...]`` in the order
    owners first appear. A group whose owner is 65535 names keys no node serves."""
    if owners.shape[0] != 16384:
        raise ValueError("owners must have one entry per slot (16384)")
    cdef Py_ssize_t i = 0
    cdef unsigned short owner
    groups = {}
    for slot in key_slots(prefix, keys):
        owner = owners[<Py_ssize_t>slot]
        group = groups.get(owner)
        if group is None:
            groups[owner] = group = []
        group.append(i)
        i += 1
    out = []
    for owner_key, indices in groups.items():
        out.append((owner_key, pack_key_command(command, prefix, [keys[j] for j in indices], True), indices))
    return out


def scatter(list out, list positions, values) -> None:
    """``out[positions[i]] = values[i]`` for each ``i``: one master's replies put back in key order
    (``values`` is the reply itself when ``positions`` holds one key, as a pipeline of one answers)."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(positions)
    if n == 1:
        out[<Py_ssize_t>positions[0]] = values
        return
    if type(values) is not list or PyList_GET_SIZE(values) != n:
        raise ValueError(f"expected {n} replies")
    for i in range(n):
        out[<Py_ssize_t><object>PyList_GET_ITEM(positions, i)] = <object>PyList_GET_ITEM(values, i)
