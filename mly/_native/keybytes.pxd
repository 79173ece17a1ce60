# A cache key's bytes for the store wire modules (redis_wire, aerospike_wire): an inline
# function, so each module compiles its own copy from this one definition.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize


cdef inline const char* key_bytes(object key, Py_ssize_t* size) except NULL:
    """A key's bytes: a ``str``'s UTF-8 (cached by CPython after the first call) or a ``bytes``'."""
    if type(key) is str:
        return PyUnicode_AsUTF8AndSize(key, size)
    if type(key) is bytes:
        size[0] = PyBytes_GET_SIZE(key)
        return PyBytes_AS_STRING(key)
    raise TypeError(f"a key must be str or bytes, not {type(key).__name__}")
