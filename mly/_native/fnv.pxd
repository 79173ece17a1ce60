from libc.stdint cimport uint64_t

cdef uint64_t FNV64_OFFSET
cdef uint64_t FNV64_PRIME

cdef uint64_t fnv1_64_update(uint64_t h, const unsigned char* data, Py_ssize_t n) noexcept nogil
cdef uint64_t fnv1a_64_update(uint64_t h, const unsigned char* data, Py_ssize_t n) noexcept nogil
