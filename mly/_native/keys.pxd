from libc.stdint cimport int64_t, uint32_t, uint64_t


ctypedef struct StrEntry:
    uint64_t hash
    uint32_t off
    uint32_t len


# Open addressing over an index array (like CPython's dict): the index costs 4
# bytes a slot, so a low load factor stays cheap even for large vocabularies.
ctypedef struct StrSet:
    uint32_t* index
    StrEntry* entries
    char* arena
    size_t mask


ctypedef struct IntSet:
    int64_t* slots
    size_t mask
    bint has_empty_marker


ctypedef struct TextBuf:
    char* p
    size_t len
    size_t cap


ctypedef struct Slot:
    int kind
    int precision
    double scale
    bint narrow
    StrSet* strs
    IntSet* ints


ctypedef struct Col:
    int src
    Py_ssize_t step
    const void* data
    const char** sp
    Py_ssize_t* sn
    bint narrow


cdef class KeyBuilder:
    cdef Slot* _slots
    cdef Py_ssize_t _n
    cdef int _render_scalar(self, const Slot* slot, object value, TextBuf* b, list keep) except -1
    cdef int _prepare(self, Py_ssize_t k, object col, Py_ssize_t n_rows, Col* c, list keep) except -1
