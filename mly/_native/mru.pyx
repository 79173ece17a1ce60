# cython: language_level=3
"""Byte-budget MRU cache of row JSON: TTL, negative entries, a dictionary hash per entry.

Each entry is one allocation holding a fixed header, the key's UTF-8 bytes and
the value, linked into a recency list and indexed by an open-addressing table.
No Python object is kept per entry, so the byte budget measures what the
process really spends, and the garbage collector never walks the cache.

Thread safety comes from the GIL: every method computes what may call Python
code (``hash(key)``, the key's UTF-8, ``bytes(value)``) first, then changes the
structure with C calls only, which cannot switch threads.

At 100k entries a put that evicts is bound by cache misses more than by
instructions: the new key's slot, the victim entry and the victim's slot are
all cold. So a put learns that a new key is absent, and where it goes, from
one control byte per slot (an array 1/16 of the table that stays cached); a
put that evicted prefetches the next victim and its slot, which is known
without loading the victim because each entry keeps the key hash of its list
neighbour (``prev_hash``); and an eviction victim whose block has the size
class the new entry needs is reused instead of freed and allocated again.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject_Hash
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DATA, PyUnicode_GET_LENGTH
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

cdef extern from *:
    """
    #define MLY_MISSING_LEN 0xFFFFFFFFu
    #if defined(__GNUC__) || defined(__clang__)
    #define MLY_PREFETCH_W(p) __builtin_prefetch((const void*)(p), 1, 3)
    #else
    #define MLY_PREFETCH_W(p) ((void)(p))
    #endif
    """
    const uint32_t MISSING_LEN "MLY_MISSING_LEN"
    # A hint only (no effect on results): start loading a line we will write soon.
    void prefetch_w "MLY_PREFETCH_W"(const void* p) noexcept nogil

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)

# ``prev`` is the more recently used neighbour. An entry does not keep its own
# key hash (its table slot has it) but ``prev``'s: evicting the tail then
# yields the new tail's hash from the victim itself, so the next victim's slot
# can be prefetched without first waiting for the next victim to load.
ctypedef struct Entry:
    Entry* prev
    Entry* next
    Py_hash_t prev_hash
    int64_t dict_hash
    int64_t expires_ns
    uint32_t key_len
    uint32_t value_len

# A table slot keeps the hash beside the pointer: probing and backward-shift
# deletion then read only the table, not one scattered entry per step.
ctypedef struct Bucket:
    Py_hash_t hash
    Entry* entry


cdef inline size_t _table_bytes(size_t slots) noexcept nogil:
    """The index's real memory: the bucket array plus one control byte per slot."""
    return block_bytes(slots * sizeof(Bucket)) + block_bytes(slots)


cdef inline uint8_t _ctrl_byte(Py_hash_t h) noexcept nogil:
    """A slot's control byte: 0 when empty, else 0x80 and the hash's top 7 bits.

    The top bits are independent of the slot (chosen by the low bits), so two
    keys sharing a cluster match on the control byte only 1 time in 128.
    """
    return <uint8_t>(0x80 | (<uint64_t>h >> 57))

ENTRY_HEADER_BYTES = sizeof(Entry)
MIN_MAX_BYTES = 1024
cdef size_t INITIAL_SLOTS = 8
cdef int64_t MAX_TTL_MS = 100 * 366 * 24 * 3600 * 1000


@cython.final
cdef class _KnownMissing:
    """A negative entry: the stores were asked and had nothing (falsy, like a miss)."""

    def __repr__(self):
        return "KNOWN_MISSING"

    def __bool__(self):
        return False

    def __reduce__(self):
        return "KNOWN_MISSING"


KNOWN_MISSING = _KnownMissing()
cdef object _MISSING = KNOWN_MISSING


cdef inline size_t block_bytes(size_t n) noexcept nogil:
    """What a PyMem_Malloc(n) really takes (CPython 3.11, 64-bit glibc).

    pymalloc serves <= 512 bytes from 16-byte size classes without a per-block
    header; bigger requests go to malloc: an 8-byte chunk header, 16-byte
    alignment, and whole pages once above the 128 KiB mmap threshold.
    """
    if n <= 512:
        return (n + 15) & ~(<size_t>15)
    if n >= 128 * 1024:
        return (n + 16 + 4095) & ~(<size_t>4095)
    return (n + 8 + 15) & ~(<size_t>15)


cdef inline size_t alloc_bytes(size_t n) noexcept nogil:
    """What to request from PyMem_Malloc for an entry of ``n`` bytes.

    Up to 512 bytes: the whole pymalloc size class, which costs no more memory
    than ``n`` (``block_bytes`` is the same) and lets the block later hold any
    entry of that class (a reused eviction victim, an in-place update) while
    writing only inside what was requested, which the debug allocator hooks
    (``-X dev``, ``PYTHONMALLOC=debug``) check. Bigger entries request exactly
    ``n``, so they are only ever reused for the very same size. Every entry's
    allocation is ``alloc_bytes(_entry_size(e))`` bytes: the header has no
    room for a capacity field.
    """
    if n <= 512:
        return (n + 15) & ~(<size_t>15)
    return n


cdef inline char* _data(Entry* e) noexcept nogil:
    return (<char*>e) + sizeof(Entry)


cdef inline size_t _entry_size(const Entry* e) noexcept nogil:
    return sizeof(Entry) + e.key_len + (0 if e.value_len == MISSING_LEN else e.value_len)


cdef inline void _prefetch_entry_tail(const Entry* e) noexcept nogil:
    """Prefetch the two cache lines after an entry's first: key and value of a typical row.

    Integer arithmetic, so the address may lie past a small entry's block
    without forming an out-of-bounds pointer; a prefetch never faults.
    """
    prefetch_w(<const void*>(<size_t>e + 64))
    prefetch_w(<const void*>(<size_t>e + 128))


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef const char* _key_utf8_slow(str key, Py_ssize_t* n) except? NULL:
    cdef const char* p
    try:
        p = PyUnicode_AsUTF8AndSize(key, n)
    except UnicodeEncodeError:
        return NULL
    return p


cdef inline const char* _key_utf8(str key, Py_ssize_t* n) except? NULL:
    """The key's UTF-8 without a copy: an ASCII str is its own UTF-8, any other
    str caches its UTF-8 on first use. NULL with no error set means the key has
    lone surrogates (no JSON parser makes those): the caller encodes it with
    ``surrogatepass`` itself, so distinct keys stay distinct."""
    if PyUnicode_IS_COMPACT_ASCII(key):
        n[0] = PyUnicode_GET_LENGTH(key)
        return <const char*>PyUnicode_DATA(key)
    return _key_utf8_slow(key, n)


@cython.final
cdef class MRUCache:
    """Keeps the most recently used rows within ``max_bytes`` of real memory.

    ``bytes_used`` counts each entry's allocation as the allocator rounds it
    (header + key + value) and the index table, so the budget is the memory the
    process spends, not the payload alone.
    """

    cdef Bucket* _table
    # One byte per slot, 1/16 of the table's size, so it mostly stays in the
    # CPU cache: a put of a new key (and a get that misses) usually learns
    # from it alone that the key is absent and where it goes, without
    # loading the key's bucket, which at 100k entries is a trip to memory.
    cdef uint8_t* _ctrl
    cdef size_t _mask
    cdef size_t _table_charge  # _table_bytes(_mask + 1), kept for the per-put fit check
    cdef size_t _hole  # the slot the last _detach left empty
    cdef Entry* _head
    cdef Entry* _tail
    cdef Py_hash_t _tail_hash  # the tail's key hash (entries keep only their neighbour's)
    cdef Py_ssize_t _count
    cdef Py_ssize_t _used
    cdef Py_ssize_t _max
    cdef uint64_t _hits, _misses, _negative_hits, _evictions, _expired, _stale

    def __cinit__(self, Py_ssize_t max_bytes):
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be >= {MIN_MAX_BYTES}, got {max_bytes}")
        self._max = max_bytes
        self._resize(INITIAL_SLOTS)

    def __dealloc__(self):
        self._free_entries()
        PyMem_Free(self._table)
        PyMem_Free(self._ctrl)

    cdef void _free_entries(self) noexcept:
        cdef Entry* e = self._head
        cdef Entry* nxt
        while e != NULL:
            nxt = e.next
            PyMem_Free(e)
            e = nxt
        self._head = self._tail = NULL
        self._count = 0

    cdef int _resize(self, size_t slots) except -1:
        cdef Bucket* table = <Bucket*>PyMem_Malloc(slots * sizeof(Bucket))
        cdef uint8_t* ctrl = <uint8_t*>PyMem_Malloc(slots)
        cdef size_t i, j
        if table == NULL or ctrl == NULL:
            PyMem_Free(table)
            PyMem_Free(ctrl)
            raise MemoryError()
        memset(table, 0, slots * sizeof(Bucket))
        memset(ctrl, 0, slots)
        if self._table != NULL:
            for j in range(self._mask + 1):
                if self._ctrl[j] != 0:
                    i = <size_t>self._table[j].hash & (slots - 1)
                    while ctrl[i] != 0:
                        i = (i + 1) & (slots - 1)
                    table[i] = self._table[j]
                    ctrl[i] = self._ctrl[j]
            self._used -= _table_bytes(self._mask + 1)
            PyMem_Free(self._table)
            PyMem_Free(self._ctrl)
        self._table = table
        self._ctrl = ctrl
        self._mask = slots - 1
        self._table_charge = _table_bytes(slots)
        self._used += self._table_charge
        return 0

    cdef inline Py_ssize_t _find(self, Py_hash_t h, const char* k, Py_ssize_t n, bint reading) noexcept:
        """The slot holding the key, or ``-1 - free slot`` where it would go.

        Writers walk the control bytes and read a bucket (then the entry) only
        where the control byte matches: a put of a new key usually touches no
        bucket at all. ``reading`` (a get, which expects a hit and will read
        the bucket anyway) walks the buckets directly, saving the control
        byte's load in front of the bucket's; on a hash match it prefetches
        the entry's next two lines before comparing the first, so they arrive
        together instead of one after the other.
        """
        cdef size_t i = <size_t>h & self._mask
        cdef uint8_t c = _ctrl_byte(h), ci
        cdef Entry* e
        if reading:
            while True:
                e = self._table[i].entry
                if e == NULL:
                    return -1 - <Py_ssize_t>i
                if self._table[i].hash == h:
                    _prefetch_entry_tail(e)
                    if e.key_len == <uint32_t>n and memcmp(_data(e), k, n) == 0:
                        return <Py_ssize_t>i
                i = (i + 1) & self._mask
        while True:
            ci = self._ctrl[i]
            if ci == 0:
                return -1 - <Py_ssize_t>i
            if ci == c and self._table[i].hash == h:
                e = self._table[i].entry
                if e.key_len == <uint32_t>n and memcmp(_data(e), k, n) == 0:
                    return <Py_ssize_t>i
            i = (i + 1) & self._mask

    cdef inline void _unlink(self, Entry* e) noexcept:
        if e.prev != NULL:
            e.prev.next = e.next
        else:
            self._head = e.next
        if e.next != NULL:
            e.next.prev = e.prev
            e.next.prev_hash = e.prev_hash
        else:
            self._tail = e.prev
            self._tail_hash = e.prev_hash

    cdef inline void _push_front(self, Entry* e, Py_hash_t h) noexcept:
        """Make ``e`` (key hash ``h``) the most recently used entry."""
        e.prev = NULL
        e.next = self._head
        if self._head != NULL:
            self._head.prev = e
            self._head.prev_hash = h
        else:
            self._tail = e
            self._tail_hash = h
        self._head = e

    cdef inline Entry* _detach(self, size_t slot) noexcept:
        """Take the entry in ``slot`` out of list, table and counters; the caller frees or reuses it.

        Exactly one slot ends up empty, ``self._hole``; every other slot stays
        occupied (a shift only moves entries into the hole it is closing).

        Backward-shift deletion keeps linear probing tombstone-free: each later
        entry of the cluster moves into the hole unless its home lies in
        ``(hole, j]``, i.e. unless it is nearer its home than the hole is. One
        unsigned comparison decides that, so the loop has a single
        data-dependent branch instead of four.
        """
        cdef Bucket* table = self._table
        cdef uint8_t* ctrl = self._ctrl
        cdef Entry* e = table[slot].entry
        cdef size_t mask = self._mask, hole = slot, j = slot
        self._unlink(e)
        self._count -= 1
        self._used -= block_bytes(_entry_size(e))
        while True:
            j = (j + 1) & mask
            if ctrl[j] == 0:
                break
            if ((j - <size_t>table[j].hash) & mask) >= ((j - hole) & mask):
                table[hole] = table[j]
                ctrl[hole] = ctrl[j]
                hole = j
        table[hole].entry = NULL
        ctrl[hole] = 0
        self._hole = hole
        return e

    cdef inline void _remove(self, size_t slot) noexcept:
        PyMem_Free(self._detach(slot))

    cdef inline Entry* _evict_until(self, size_t room, size_t want_alloc, size_t home, size_t* free_slot) noexcept:
        """Evict from the tail until ``room`` more bytes fit the budget.

        Returns one victim whose allocation is exactly ``want_alloc`` bytes
        instead of freeing it (NULL if none was): the caller reuses it, which
        saves a free and a malloc and writes into a block that is already in
        the CPU cache.

        ``free_slot`` (optional) is where the caller's new key would go: the
        first empty slot from the key's ``home`` slot. An eviction empties one
        slot and fills none, so the first empty slot becomes the emptied one
        if that lies between ``home`` and ``free_slot``; tracking that here
        spares a second probe (and its unpredictable branches) after evicting.
        """
        cdef Entry* spare = NULL
        cdef Entry* v
        cdef size_t i, vsize, mask = self._mask
        while <size_t>self._used + room > <size_t>self._max and self._tail != NULL:
            v = self._tail
            i = <size_t>self._tail_hash & mask
            while self._table[i].entry != v:
                i = (i + 1) & mask
            self._detach(i)
            self._evictions += 1
            if free_slot != NULL and ((self._hole - home) & mask) < ((free_slot[0] - home) & mask):
                free_slot[0] = self._hole
            vsize = _entry_size(v)
            if spare == NULL and alloc_bytes(vsize) == want_alloc:
                spare = v
            else:
                PyMem_Free(v)
        return spare

    cdef inline void _prefetch_next_victim(self) noexcept:
        """Start loading what evicting the current tail will read: the tail and its table slot.

        Called after a put that evicted, so the next put probably evicts too;
        the lines arrive while Python runs the caller's loop. Both addresses
        are known without touching the tail (``_tail_hash``), so this never
        waits for memory.
        """
        cdef size_t home = <size_t>self._tail_hash & self._mask
        if self._tail != NULL:
            prefetch_w(self._tail)
            prefetch_w(&self._table[home])
            prefetch_w(&self._ctrl[home])

    cdef int _store(self, str key, const char* value, Py_ssize_t value_len, int64_t dict_hash,
                    int64_t ttl_ms) except -1:
        """Insert or update ``key``; ``value == NULL`` stores a negative entry."""
        cdef Py_ssize_t klen, slot
        cdef Entry* e
        cdef Entry* moved
        cdef size_t size, charge, want, free
        cdef uint64_t evictions_before = self._evictions
        cdef object holder
        cdef Py_hash_t h = PyObject_Hash(key)
        # The control byte is usually cached already; the bucket, which an
        # insert writes and an update reads, loads while the key is checked,
        # the clock read and the sizes computed.
        prefetch_w(&self._ctrl[<size_t>h & self._mask])
        prefetch_w(&self._table[<size_t>h & self._mask])
        if ttl_ms < 0:
            raise ValueError(f"ttl_ms must be >= 0 (0: no expiry), got {ttl_ms}")
        cdef const char* k = _key_utf8(key, &klen)
        if k == NULL:
            holder = key.encode("utf-8", "surrogatepass")
            k = PyBytes_AS_STRING(holder)
            klen = PyBytes_GET_SIZE(holder)
        if klen >= MISSING_LEN or value_len >= MISSING_LEN:
            raise ValueError("key or value larger than 4 GiB")
        size = sizeof(Entry) + klen + (value_len if value != NULL else 0)
        charge = block_bytes(size)
        want = alloc_bytes(size)
        # Capped at ~100 years so the nanosecond deadline cannot overflow.
        cdef int64_t expires = _now_ns() + min(ttl_ms, MAX_TTL_MS) * 1000000 if ttl_ms > 0 else 0
        slot = self._find(h, k, klen, False)
        if charge + self._table_charge > <size_t>self._max:
            # Cannot fit even alone; an older value must not outlive this write.
            if slot >= 0:
                self._remove(slot)
            return 0
        if slot >= 0:
            e = self._table[slot].entry
            if alloc_bytes(_entry_size(e)) == want:
                self._unlink(e)  # the block already holds ``want`` bytes and is charged ``charge``
            else:
                # Another size class: a fresh block, not PyMem_Realloc, which
                # keeps a pymalloc block that shrinks by less than a quarter in
                # its old, bigger class, so the entry would cost more than it
                # is charged.
                moved = <Entry*>PyMem_Malloc(want)
                if moved == NULL:
                    raise MemoryError()
                self._unlink(e)
                memcpy(moved, e, sizeof(Entry) + klen)  # header and key; the value is written below
                self._used += <Py_ssize_t>charge - <Py_ssize_t>block_bytes(_entry_size(e))
                self._table[slot].entry = moved
                PyMem_Free(e)
                e = moved
        else:
            free = <size_t>(-1 - slot)
            if <size_t>(self._count + 1) * 4 > (self._mask + 1) * 3:
                self._resize((self._mask + 1) * 2)
                free = <size_t>(-1 - self._find(h, k, klen, False))
            # Evict before allocating, so a victim of the right size can be reused.
            e = self._evict_until(charge, want, <size_t>h & self._mask, &free)
            if e == NULL:
                e = <Entry*>PyMem_Malloc(want)
                if e == NULL:
                    raise MemoryError()
            e.key_len = <uint32_t>klen
            memcpy(_data(e), k, klen)
            self._table[free].hash = h
            self._table[free].entry = e
            self._ctrl[free] = _ctrl_byte(h)
            self._count += 1
            self._used += charge
        e.dict_hash = dict_hash
        e.expires_ns = expires
        if value == NULL:
            e.value_len = MISSING_LEN
        else:
            e.value_len = <uint32_t>value_len
            memcpy(_data(e) + klen, value, value_len)
        self._push_front(e, h)
        if <size_t>self._used > <size_t>self._max:
            # An update that grew its entry evicts after the fact; so does an
            # insert whose table resize ate the room it evicted for. The new
            # entry is at the head, so it goes last, and only if alone it
            # still does not fit.
            self._evict_until(0, 0, 0, NULL)  # want_alloc 0 matches no entry: all victims are freed
        if self._evictions != evictions_before:
            self._prefetch_next_victim()
        return 0

    cdef object _lookup(self, str key, int64_t dict_hash, int64_t* now):
        """One get; ``now[0] < 0`` means not read yet: the clock is read only for an entry that has a TTL."""
        cdef Entry* e = self._entry(key, dict_hash, now)
        if e == NULL:
            return None
        if e.value_len == MISSING_LEN:
            self._negative_hits += 1
            return _MISSING
        self._hits += 1
        return PyBytes_FromStringAndSize(_data(e) + e.key_len, e.value_len)

    cdef Entry* _entry(self, str key, int64_t dict_hash, int64_t* now) except? NULL:
        """The live entry of ``key`` (a value or a negative one), moved to the front; NULL for a
        miss, counted. Hits are the caller's to count. An entry returned stays allocated until
        the next put, delete or clear: a later lookup only frees the entry it looks up."""
        cdef Py_ssize_t klen, slot
        cdef object holder
        cdef Py_hash_t h = PyObject_Hash(key)
        prefetch_w(&self._table[<size_t>h & self._mask])
        cdef const char* k = _key_utf8(key, &klen)
        if k == NULL:
            holder = key.encode("utf-8", "surrogatepass")
            k = PyBytes_AS_STRING(holder)
            klen = PyBytes_GET_SIZE(holder)
        slot = self._find(h, k, klen, True)
        if slot < 0:
            self._misses += 1
            return NULL
        cdef Entry* e = self._table[slot].entry
        if e.expires_ns != 0:
            if now[0] < 0:
                now[0] = _now_ns()
            if now[0] >= e.expires_ns:
                self._remove(slot)
                self._expired += 1
                self._misses += 1
                return NULL
        if e.dict_hash != dict_hash:
            self._remove(slot)
            self._stale += 1
            self._misses += 1
            return NULL
        if e != self._head:
            self._unlink(e)
            self._push_front(e, h)
        return e

    def get(self, str key not None, int64_t dict_hash):
        """The value, ``KNOWN_MISSING``, or None (absent, expired, or computed under another dictionary)."""
        cdef int64_t now = -1
        return self._lookup(key, dict_hash, &now)

    def get_many(self, list keys not None, int64_t dict_hash) -> list:
        """``get`` for each key, against one clock reading (taken when the first entry with a TTL is found)."""
        cdef int64_t now = -1
        cdef Py_ssize_t i, n = len(keys)
        cdef list out = [None] * n
        for i in range(n):
            out[i] = self._lookup(<str?>keys[i], dict_hash, &now)
        return out

    def get_joined(self, list keys not None, int64_t dict_hash, bint batch):
        """``get_many``'s answer, except when every key holds a value: then those values as one
        ``bytes``, joined as a JSON array (``batch``) or the one value, without a ``bytes`` object
        per value. The same lookups, recency and counters as ``get_many``."""
        cdef int64_t now = -1
        cdef Py_ssize_t i, n = len(keys), total = 2
        cdef Entry** entries
        cdef Entry* e
        cdef bint all_hit = True
        cdef char* out
        cdef list values
        if n == 0 or (not batch and n != 1):
            raise ValueError("get_joined needs keys: one unless batch")
        entries = <Entry**>PyMem_Malloc(n * sizeof(Entry*))
        if entries == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                e = self._entry(<str?>keys[i], dict_hash, &now)
                entries[i] = e
                if e == NULL or e.value_len == MISSING_LEN:
                    all_hit = False
                else:
                    total += e.value_len + 1
            if not all_hit:
                values = [None] * n
                for i in range(n):
                    e = entries[i]
                    if e == NULL:
                        continue
                    if e.value_len == MISSING_LEN:
                        self._negative_hits += 1
                        values[i] = _MISSING
                    else:
                        self._hits += 1
                        values[i] = PyBytes_FromStringAndSize(_data(e) + e.key_len, e.value_len)
                return values
            self._hits += n
            if not batch:
                return PyBytes_FromStringAndSize(_data(entries[0]) + entries[0].key_len, entries[0].value_len)
            joined = PyBytes_FromStringAndSize(NULL, total - 1)
            out = PyBytes_AS_STRING(joined)
            out[0] = b'['
            out += 1
            for i in range(n):
                e = entries[i]
                memcpy(out, _data(e) + e.key_len, e.value_len)
                out += e.value_len
                out[0] = b',' if i + 1 < n else b']'
                out += 1
            return joined
        finally:
            PyMem_Free(entries)

    def put(self, str key not None, value, int64_t dict_hash, int64_t ttl_ms):
        """Store ``value`` (bytes) under ``key``; ``ttl_ms == 0`` never expires."""
        cdef bytes raw
        if type(value) is bytes:  # the caller's reference keeps it alive: no copy, no new reference
            self._store(key, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), dict_hash, ttl_ms)
        elif isinstance(value, (bytearray, memoryview)):
            raw = bytes(value)
            self._store(key, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), dict_hash, ttl_ms)
        else:  # bytes(5) would quietly store five zero bytes
            raise TypeError(f"value must be bytes, got {type(value).__name__}")

    def put_missing(self, str key not None, int64_t dict_hash, int64_t ttl_ms):
        """Remember that the stores have nothing for ``key`` (until ``ttl_ms`` passes)."""
        self._store(key, NULL, 0, dict_hash, ttl_ms)

    def delete(self, str key not None) -> bool:
        cdef Py_ssize_t klen, slot
        cdef object holder
        cdef const char* k = _key_utf8(key, &klen)
        if k == NULL:
            holder = key.encode("utf-8", "surrogatepass")
            k = PyBytes_AS_STRING(holder)
            klen = PyBytes_GET_SIZE(holder)
        slot = self._find(PyObject_Hash(key), k, klen, False)
        if slot < 0:
            return False
        self._remove(slot)
        return True

    def clear(self):
        self._free_entries()
        memset(self._table, 0, (self._mask + 1) * sizeof(Bucket))
        memset(self._ctrl, 0, self._mask + 1)
        self._used = _table_bytes(self._mask + 1)

    def __len__(self):
        return self._count

    @property
    def bytes_used(self) -> int:
        return self._used

    @property
    def max_bytes(self) -> int:
        return self._max

    def stats(self) -> dict:
        return {
            "hits": self._hits,
            "misses": self._misses,
            "negative_hits": self._negative_hits,
            "evictions": self._evictions,
            "expired": self._expired,
            "stale": self._stale,
            "entries": self._count,
            "bytes": self._used,
        }

    def _check_invariants(self):
        """Walk list and table and compare with the counters (tests only: O(n)).

        An entry's own hash is its successor's ``prev_hash`` (``_tail_hash``
        for the tail); finding every entry through that hash checks those
        copies as well as the table.
        """
        cdef Entry* e = self._head
        cdef Entry* prev = NULL
        cdef Py_ssize_t n = 0, in_table = 0, slot
        cdef size_t used = _table_bytes(self._mask + 1), i
        cdef Py_hash_t h
        while e != NULL:
            assert e.prev == prev, "broken prev link"
            h = e.next.prev_hash if e.next != NULL else self._tail_hash
            slot = self._find(h, _data(e), e.key_len, False)
            assert slot >= 0 and self._table[slot].entry == e, "entry not reachable from its hash"
            used += block_bytes(_entry_size(e))
            n += 1
            prev = e
            e = e.next
        assert prev == self._tail, "tail is not the last entry"
        for i in range(self._mask + 1):
            in_table += self._table[i].entry != NULL
            assert (self._ctrl[i] == 0) == (self._table[i].entry == NULL), "control byte disagrees with slot"
            assert self._ctrl[i] == 0 or self._ctrl[i] == _ctrl_byte(self._table[i].hash), "wrong control byte"
        assert n == self._count == in_table, f"count {self._count}, list {n}, table {in_table}"
        assert used == <size_t>self._used, f"bytes_used {self._used}, recomputed {used}"
        assert self._used <= self._max, "over budget"
        return True
