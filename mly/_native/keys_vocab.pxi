# Vocabulary hash sets for keys.pyx (textually included; not a module).
#
# Built once per KeyBuilder, probed per value without the GIL. Strings are
# matched on their UTF-8 bytes, so a lookup needs no Python object and no hash
# of the str; FNV-1a is enough here because the table's shape is fixed by the
# (trusted) model vocabulary: a crafted request value can only walk an existing
# probe chain, not lengthen one.

cdef extern from *:
    """
    #define MLY_NO_ENTRY 0xFFFFFFFFu
    """
    const uint32_t _NO_ENTRY "MLY_NO_ENTRY"


cdef inline size_t _table_size(size_t n) noexcept nogil:
    # Load factor <= 0.5 keeps linear-probe chains short.
    cdef size_t cap = 8
    while cap < 2 * n:
        cap <<= 1
    return cap


cdef inline uint64_t _mix64(uint64_t x) noexcept nogil:
    # splitmix64 finalizer: consecutive ids must not land in consecutive slots.
    x ^= x >> 30
    x *= 0xBF58476D1CE4E5B9ULL
    x ^= x >> 27
    x *= 0x94D049BB133111EBULL
    x ^= x >> 31
    return x


cdef void strset_free(StrSet* s) noexcept nogil:
    if s != NULL:
        free(s.index)
        free(s.entries)
        free(s.arena)
        free(s)


cdef bint strset_has(const StrSet* s, const char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = fnv1a_64_update(FNV64_OFFSET, <const unsigned char*>p, n)
    cdef size_t i = <size_t>h & s.mask
    cdef uint32_t e
    while True:
        e = s.index[i]
        if e == _NO_ENTRY:
            return False
        if (s.entries[e].hash == h and s.entries[e].len == <uint32_t>n
                and memcmp(s.arena + s.entries[e].off, p, n) == 0):
            return True
        i = (i + 1) & s.mask


cdef StrSet* strset_new(list encoded) except NULL:
    """``encoded`` holds the UTF-8 ``bytes`` of each vocabulary string."""
    cdef size_t total = 0
    cdef bytes raw
    for raw in encoded:
        total += len(raw)
    if total >= _NO_ENTRY or len(encoded) >= _NO_ENTRY:
        raise ValueError("vocabulary too large (4 GiB / 2**32 entries)")
    cdef size_t cap = _table_size(len(encoded))
    cdef StrSet* s = <StrSet*>calloc(1, sizeof(StrSet))
    if s == NULL:
        raise MemoryError()
    s.mask = cap - 1
    s.index = <uint32_t*>malloc(cap * sizeof(uint32_t))
    s.entries = <StrEntry*>malloc((len(encoded) + 1) * sizeof(StrEntry))
    s.arena = <char*>malloc(total + 1)
    if s.index == NULL or s.entries == NULL or s.arena == NULL:
        strset_free(s)
        raise MemoryError()
    memset(s.index, 0xFF, cap * sizeof(uint32_t))
    cdef uint32_t count = 0
    cdef size_t off = 0
    cdef size_t i
    cdef const char* p
    cdef Py_ssize_t n
    for raw in encoded:
        p = raw
        n = len(raw)
        if strset_has(s, p, n):
            continue
        memcpy(s.arena + off, p, n)
        s.entries[count].hash = fnv1a_64_update(FNV64_OFFSET, <const unsigned char*>p, n)
        s.entries[count].off = <uint32_t>off
        s.entries[count].len = <uint32_t>n
        i = <size_t>s.entries[count].hash & s.mask
        while s.index[i] != _NO_ENTRY:
            i = (i + 1) & s.mask
        s.index[i] = count
        count += 1
        off += n
    return s


cdef void intset_free(IntSet* s) noexcept nogil:
    if s != NULL:
        free(s.slots)
        free(s)


cdef bint intset_has(const IntSet* s, int64_t v) noexcept nogil:
    # INT64_MIN marks an empty slot; whether it is itself a member is a flag.
    if v == INT64_MIN:
        return s.has_empty_marker
    cdef size_t i = <size_t>_mix64(<uint64_t>v) & s.mask
    while True:
        if s.slots[i] == v:
            return True
        if s.slots[i] == INT64_MIN:
            return False
        i = (i + 1) & s.mask


cdef IntSet* intset_new(const int64_t[::1] values) except NULL:
    cdef size_t cap = _table_size(values.shape[0])
    cdef IntSet* s = <IntSet*>calloc(1, sizeof(IntSet))
    if s == NULL:
        raise MemoryError()
    s.mask = cap - 1
    s.slots = <int64_t*>malloc(cap * sizeof(int64_t))
    if s.slots == NULL:
        intset_free(s)
        raise MemoryError()
    cdef size_t i
    cdef Py_ssize_t j
    cdef int64_t v
    for i in range(cap):
        s.slots[i] = INT64_MIN
    for j in range(values.shape[0]):
        v = values[j]
        if v == INT64_MIN:
            s.has_empty_marker = True
            continue
        i = <size_t>_mix64(<uint64_t>v) & s.mask
        while s.slots[i] != INT64_MIN and s.slots[i] != v:
            i = (i + 1) & s.mask
        s.slots[i] = v
    return s
