# cython: language_level=3
"""Cache-key text for one row or a whole batch.

The key must be byte-identical to the Go client's (so Go and Python clients
share caches) except where docs/differences-from-go.md #5 escapes ``/`` and ``\\``. A batch is
rendered in one nogil pass into a C buffer: vocabulary lookups and number
formatting touch no Python object, and each row is decoded to ``str`` once.
"""

cimport cython
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.math cimport fabs, floor, isfinite, isinf, isnan, round, signbit
from libc.stdint cimport INT64_MAX, INT64_MIN, int32_t, int64_t, uint32_t, uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport calloc, free, malloc, realloc, strtod
from libc.string cimport memchr, memcmp, memcpy, memset

from mly._native.fnv cimport FNV64_OFFSET, fnv1a_64_update
from mly._native.rounding cimport round_scaled

import numpy as np

include "keys_vocab.pxi"
include "keys_text.pxi"

SLOT_NONE = 0
SLOT_STRING_VOCAB = 1
SLOT_INT_VOCAB = 2
SLOT_WILDCARD = 3
SLOT_FLOAT = 4
OOV_STRING = "[UNK]"


cdef Py_ssize_t NOGIL_MIN_ROWS = 512  # below this a batch renders with the GIL held

cdef enum:
    K_NONE = 0
    K_STRING_VOCAB = 1
    K_INT_VOCAB = 2
    K_WILDCARD = 3
    K_FLOAT = 4

cdef enum:
    SRC_NONE = 0
    SRC_STR = 1
    SRC_I64 = 2
    SRC_F32 = 3
    SRC_F64 = 4
    SRC_BOOL = 5

cdef enum:
    WILDCARD_DECIMALS = 10

_KIND_NAMES = ("none", "string vocabulary", "int vocabulary", "wildcard", "float")
_float32 = np.float32
_bool_types = (bool, np.bool_)
_int_types = (int, np.integer)
_float_types = (float, np.floating)


cdef const char* _utf8(object s, Py_ssize_t* n, list keep) except NULL:
    # Lone surrogates cannot come from JSON, but a Python caller may pass them;
    # surrogatepass keeps them distinct instead of failing the whole batch.
    cdef bytes raw
    try:
        return PyUnicode_AsUTF8AndSize(s, n)
    except UnicodeEncodeError:
        raw = (<str>s).encode("utf-8", "surrogatepass")
        keep.append(raw)
        n[0] = len(raw)
        return raw


cdef int _as_double(object v, bint default_narrow, double* out) except -1:
    """Store ``v`` as a double and return whether it is a float32 value.

    A numpy scalar says its own width; a Python number takes the slot's, as a
    value of that column would.
    """
    cdef bint narrow
    cdef double x
    if type(v) is float:
        x = v
        narrow = default_narrow
    elif type(v) is _float32:
        x = float(v)
        narrow = True
    elif isinstance(v, _bool_types) or not isinstance(v, (_float_types, _int_types)):
        raise TypeError(f"expected a number, got {type(v).__name__}")
    elif isinstance(v, _float_types):
        x = float(v)
        narrow = False
    else:
        x = float(v)
        narrow = default_narrow
    if narrow:
        x = <double>(<float>x)
    out[0] = x
    return narrow


cdef bint _as_int64(object v, int64_t* out) except -1:
    if type(v) is not int:
        v = int(v)
    try:
        out[0] = v
    except OverflowError:
        return False
    return True


cdef const void* _address(object arr) except NULL:
    # The arrays are contiguous, non-empty and kept alive by the caller.
    cdef const unsigned char[::1] raw = arr.view(np.uint8)
    return &raw[0]


cdef int put_wildcard_float(TextBuf* b, double x, bint narrow) noexcept nogil:
    """A wildcard float's key text: Go's 10 decimals when they name exactly this value,
    else the shortest ``%g`` text that does.

    Ten decimals lose the value of small floats (1e-11 and 2e-11 both print
    0.0000000000), while TensorFlow gets the raw value: two requests would share
    a key but not an answer. A text is kept only if it parses back (through a
    double, then to float32 for a float32 value) to ``x``; since parsing is a
    function, no two values can keep the same text, and the fallback never has
    exactly 10 plain decimals, so it cannot meet a Go text either.
    """
    cdef size_t start = b.len
    cdef double y
    cdef int p, n
    cdef char tmp[48]
    if put_float(b, x, WILDCARD_DECIMALS) < 0:
        return -1
    if not isfinite(x):
        return 0
    if buf_reserve(b, 1) < 0:
        return -1
    b.p[b.len] = 0  # put_float's snprintf wrote it too; make it explicit for strtod
    y = strtod(b.p + start, NULL)
    if narrow:
        y = <double>(<float>y)
    if y == x:
        return 0
    b.len = start
    for p in range(1, 18):
        n = snprintf(tmp, sizeof(tmp), "%.*g", p, x)
        if n < 0 or n >= <int>sizeof(tmp):
            return -1
        y = strtod(tmp, NULL)
        if narrow:
            y = <double>(<float>y)
        if y == x:
            return put_bytes(b, tmp, n)
    return put_bytes(b, tmp, n)


cdef int _render_cell(const Slot* s, const Col* c, Py_ssize_t row, TextBuf* b) noexcept nogil:
    cdef Py_ssize_t j = row * c.step
    cdef int64_t iv
    cdef double x
    cdef bint narrow
    if c.src == SRC_NONE:
        return 0
    if c.src == SRC_STR:
        if s.kind == K_STRING_VOCAB and not strset_has(s.strs, c.sp[j], c.sn[j]):
            return put_bytes(b, "[UNK]", 5)
        return put_escaped(b, c.sp[j], c.sn[j])
    if c.src == SRC_I64:
        iv = (<const int64_t*>c.data)[j]
        if s.kind == K_INT_VOCAB and not intset_has(s.ints, iv):
            return put_bytes(b, "[UNK]", 5)
        return put_int(b, iv)
    if c.src == SRC_BOOL:
        if (<const unsigned char*>c.data)[j]:
            return put_bytes(b, "true", 4)
        return put_bytes(b, "false", 5)
    if c.src == SRC_F32:
        x = (<const float*>c.data)[j]
        narrow = True
    else:
        x = (<const double*>c.data)[j]
        narrow = c.narrow
        if narrow:
            x = <double>(<float>x)
    if s.kind == K_FLOAT:
        return put_float(b, round_scaled(x, s.scale, narrow), s.precision)
    return put_wildcard_float(b, x, narrow)


cdef inline bint _renders(int kind, int src) noexcept:
    """Whether ``_render_cell`` renders a ``src`` column in a ``kind`` slot as ``_prepare`` would."""
    if kind == K_STRING_VOCAB:
        return src == SRC_STR
    if kind == K_INT_VOCAB:
        return src == SRC_I64
    if kind == K_FLOAT:
        return src == SRC_F64 or src == SRC_F32
    return kind == K_WILDCARD


cdef int _render_rows(const Slot* slots, const Col* cols, Py_ssize_t n_slots,
                      Py_ssize_t n_rows, TextBuf* b, size_t* offs) noexcept nogil:
    cdef Py_ssize_t i, k
    for i in range(n_rows):
        offs[i] = b.len
        for k in range(n_slots):
            if k and put_bytes(b, "/", 1) < 0:
                return -1
            if _render_cell(&slots[k], &cols[k], i, b) < 0:
                return -1
    offs[n_rows] = b.len
    return 0


@cython.final
cdef class KeyBuilder:
    """Turns rows of one model's inputs into cache keys.

    ``slots`` is a sequence of ``(kind, vocabulary, precision)`` in meta/config
    ``Inputs`` order. An optional fourth item ``narrow`` (default True) says
    whether a plain Python float of that slot is a float32 value, as Go's
    ``FloatKey(float32)`` assumes; numpy arrays and scalars carry their own width.
    Vocabularies become C hash sets here, once, rather than on every request.
    """

    def __cinit__(self, slots):
        cdef Py_ssize_t k
        cdef Slot* s
        specs = [tuple(spec) for spec in slots]
        self._n = len(specs)
        self._slots = <Slot*>calloc(self._n + 1, sizeof(Slot))
        if self._slots == NULL:
            raise MemoryError()
        for k, spec in enumerate(specs):
            if len(spec) not in (3, 4):
                raise ValueError(f"slot {k}: expected (kind, vocabulary, precision[, narrow]), got {spec!r}")
            s = &self._slots[k]
            s.kind = int(spec[0])
            s.narrow = bool(spec[3]) if len(spec) == 4 else True
            vocabulary = spec[1] if spec[1] is not None else ()
            if s.kind == K_STRING_VOCAB:
                for v in vocabulary:
                    if not isinstance(v, str):
                        raise TypeError(f"slot {k}: string vocabulary holds {type(v).__name__}")
                s.strs = strset_new([(<str>v).encode("utf-8", "surrogatepass") for v in vocabulary])
            elif s.kind == K_INT_VOCAB:
                for v in vocabulary:
                    if isinstance(v, _bool_types) or not isinstance(v, _int_types):
                        raise TypeError(f"slot {k}: int vocabulary holds {type(v).__name__}")
                try:
                    packed = np.array([int(v) for v in vocabulary], dtype=np.int64)
                except OverflowError:
                    raise ValueError(f"slot {k}: int vocabulary value outside int64") from None
                s.ints = intset_new(packed)
            elif s.kind == K_FLOAT:
                s.precision = int(spec[2] or 0)
                if not 1 <= s.precision <= 308:
                    raise ValueError(f"slot {k}: float precision must be 1..308, got {s.precision}")
                s.scale = float(f"1e{s.precision}")
            elif s.kind not in (K_NONE, K_WILDCARD):
                raise ValueError(f"slot {k}: unknown slot kind {s.kind}")

    def __dealloc__(self):
        cdef Py_ssize_t k
        if self._slots != NULL:
            for k in range(self._n):
                strset_free(self._slots[k].strs)
                intset_free(self._slots[k].ints)
            free(self._slots)

    @property
    def n_slots(self) -> int:
        return self._n

    cdef int _render_scalar(self, const Slot* s, object v, TextBuf* b, list keep) except -1:
        cdef int kind = s.kind
        cdef Py_ssize_t n
        cdef const char* p
        cdef int64_t iv
        cdef double x
        cdef int rc
        cdef bint narrow
        cdef bytes raw
        if kind == K_NONE:
            return 0
        if isinstance(v, str) and (kind == K_STRING_VOCAB or kind == K_WILDCARD):
            p = _utf8(v, &n, keep)
            if kind == K_STRING_VOCAB and not strset_has(s.strs, p, n):
                rc = put_bytes(b, "[UNK]", 5)
            else:
                rc = put_escaped(b, p, n)
        elif isinstance(v, _bool_types) and kind == K_WILDCARD:
            rc = put_bytes(b, "true", 4) if v else put_bytes(b, "false", 5)
        elif (isinstance(v, _int_types) and not isinstance(v, _bool_types)
                and (kind == K_INT_VOCAB or kind == K_WILDCARD)):
            if _as_int64(v, &iv):
                if kind == K_INT_VOCAB and not intset_has(s.ints, iv):
                    rc = put_bytes(b, "[UNK]", 5)
                else:
                    rc = put_int(b, iv)
            elif kind == K_INT_VOCAB:
                rc = put_bytes(b, "[UNK]", 5)
            else:
                raw = str(int(v)).encode("ascii")
                rc = put_bytes(b, raw, len(raw))
        elif kind == K_FLOAT or (kind == K_WILDCARD and isinstance(v, _float_types)):
            narrow = _as_double(v, s.narrow, &x)
            if kind == K_FLOAT:
                rc = put_float(b, round_scaled(x, s.scale, narrow), s.precision)
            else:
                rc = put_wildcard_float(b, x, narrow)
        else:
            raise TypeError(f"a {_KIND_NAMES[kind]} slot cannot hold {type(v).__name__}")
        if rc < 0:
            raise MemoryError()
        return 0

    cdef int _prepare(self, Py_ssize_t k, object col, Py_ssize_t n_rows, Col* c, list keep) except -1:
        cdef const Slot* s = &self._slots[k]
        cdef Py_ssize_t j, m
        cdef TextBuf tmp
        if s.kind == K_NONE:
            return 0
        arr = col if isinstance(col, np.ndarray) else np.asarray(col)
        if arr.ndim != 1 or arr.shape[0] not in (1, n_rows):
            raise ValueError(f"slot {k}: column shape {arr.shape} is not ({n_rows},) or (1,)")
        m = arr.shape[0]
        c.step = 0 if m == 1 else 1
        dk = arr.dtype.kind
        if dk in "OU":
            values = arr.tolist()
            keep.append(values)
            c.sp = <const char**>malloc(m * sizeof(char*))
            c.sn = <Py_ssize_t*>malloc(m * sizeof(Py_ssize_t))
            if c.sp == NULL or c.sn == NULL:
                raise MemoryError()
            c.src = SRC_STR
            for j in range(m):
                v = values[j]
                if isinstance(v, str) and (s.kind == K_STRING_VOCAB or s.kind == K_WILDCARD):
                    c.sp[j] = _utf8(v, &c.sn[j], keep)
                    continue
                # Anything else is rendered now, with the GIL; numbers and
                # booleans hold no '/' or '\\', so escaping leaves them as they are.
                tmp = TextBuf(NULL, 0, 0)
                try:
                    self._render_scalar(s, v, &tmp, keep)
                    raw = tmp.p[:tmp.len] if tmp.len else b""
                finally:
                    free(tmp.p)
                keep.append(raw)
                c.sp[j] = raw
                c.sn[j] = len(raw)
        elif dk == "b" and s.kind == K_WILDCARD:
            arr = np.ascontiguousarray(arr)
            c.src = SRC_BOOL
        elif (dk == "i" or (dk == "u" and arr.dtype.itemsize < 8)) and s.kind == K_FLOAT:
            arr = np.ascontiguousarray(arr, dtype=np.float64)
            c.src = SRC_F64
            c.narrow = s.narrow
        elif (dk == "i" or (dk == "u" and arr.dtype.itemsize < 8)) and s.kind != K_STRING_VOCAB:
            arr = np.ascontiguousarray(arr, dtype=np.int64)
            c.src = SRC_I64
        elif dk == "f" and s.kind in (K_FLOAT, K_WILDCARD):
            c.src = SRC_F32 if arr.dtype == np.float32 else SRC_F64
            arr = np.ascontiguousarray(arr, dtype=np.float32 if c.src == SRC_F32 else np.float64)
        else:
            raise TypeError(f"slot {k}: a {_KIND_NAMES[s.kind]} slot cannot take a {arr.dtype} column")
        if c.src != SRC_STR:
            c.data = _address(arr)
        keep.append(arr)
        return 0

    def build(self, columns, Py_ssize_t n_rows) -> list:
        """One key per row; ``columns[i]`` feeds slot ``i`` (length ``n_rows`` or 1)."""
        cdef Py_ssize_t k, i
        cdef Col* cols = NULL
        cdef size_t* offs = NULL
        cdef TextBuf buf = TextBuf(NULL, 0, 0)
        cdef int rc
        cdef list keep = []
        cdef list result = []
        columns = list(columns)
        if len(columns) != self._n:
            raise ValueError(f"expected {self._n} columns, got {len(columns)}")
        if n_rows < 0:
            raise ValueError(f"n_rows must be >= 0, got {n_rows}")
        if n_rows == 0:
            return result
        try:
            cols = <Col*>calloc(self._n + 1, sizeof(Col))
            offs = <size_t*>malloc((n_rows + 1) * sizeof(size_t))
            if cols == NULL or offs == NULL or buf_reserve(&buf, n_rows * (16 * self._n + 1)) < 0:
                raise MemoryError()
            for k in range(self._n):
                self._prepare(k, columns[k], n_rows, &cols[k], keep)
            # Releasing the GIL for a few rows costs more than it saves: on the
            # event loop thread, getting it back can wait a whole switch interval
            # (5 ms) behind a busy inference thread.
            if n_rows >= NOGIL_MIN_ROWS:
                with nogil:
                    rc = _render_rows(self._slots, cols, self._n, n_rows, &buf, offs)
            else:
                rc = _render_rows(self._slots, cols, self._n, n_rows, &buf, offs)
            if rc < 0:
                raise MemoryError()
            for i in range(n_rows):
                result.append(PyUnicode_DecodeUTF8(buf.p + offs[i], offs[i + 1] - offs[i], "surrogatepass"))
            return result
        finally:
            if cols != NULL:
                for k in range(self._n):
                    free(cols[k].sp)
                    free(cols[k].sn)
            free(cols)
            free(offs)
            free(buf.p)

    def build_plain(self, columns, Py_ssize_t n_rows, dtypes) -> object:
        """Keys of a batch straight from its parsed JSON lists, or ``None``.

        ``columns[i]`` is input ``i``'s list (length ``n_rows`` or 1) and ``dtypes[i]``
        its dtype code (``mly._native.encode.DT_*``). Every input is checked, keyed or
        not, and any value that is not exactly of its input's plain JSON type (str;
        int in range; finite float that fits; bool) returns ``None``: the caller
        then takes the encoding path, which validates and names the field. A batch
        of cache hits is so answered without building a single numpy array.
        """
        cdef Py_ssize_t k, j, m, i
        cdef Col* cols = NULL
        cdef size_t* offs = NULL
        cdef TextBuf buf = TextBuf(NULL, 0, 0)
        cdef list keep = []
        cdef list result = []
        cdef list col
        cdef int code, overflow
        cdef long long iv
        cdef double x
        cdef float f
        cdef const Slot* s
        cdef Col* c
        cdef void** owned = NULL
        cdef int64_t* idata
        cdef double* fdata
        cdef unsigned char* bdata
        if len(columns) != self._n or len(dtypes) != self._n:
            raise ValueError(f"expected {self._n} columns and dtypes")
        if n_rows < 1:
            return None
        try:
            cols = <Col*>calloc(self._n + 1, sizeof(Col))
            owned = <void**>calloc(self._n + 1, sizeof(void*))  # each column's number buffer
            if owned == NULL:
                raise MemoryError()
            offs = <size_t*>malloc((n_rows + 1) * sizeof(size_t))
            if cols == NULL or offs == NULL or buf_reserve(&buf, n_rows * (16 * self._n + 1)) < 0:
                raise MemoryError()
            for k in range(self._n):
                value = columns[k]
                if type(value) is not list:
                    return None
                col = <list>value
                m = len(col)
                if m != n_rows and m != 1:
                    return None
                code = dtypes[k]
                s = &self._slots[k]
                c = &cols[k]
                c.step = 0 if m == 1 else 1
                if code == 0:  # string
                    c.sp = <const char**>malloc(m * sizeof(char*))
                    c.sn = <Py_ssize_t*>malloc(m * sizeof(Py_ssize_t))
                    if c.sp == NULL or c.sn == NULL:
                        raise MemoryError()
                    for j in range(m):
                        v = col[j]
                        if type(v) is not str:
                            return None
                        c.sp[j] = _utf8(v, &c.sn[j], keep)
                    c.src = SRC_STR if s.kind != K_NONE else SRC_NONE
                elif code == 1 or code == 2:  # int64, int32
                    idata = <int64_t*>malloc(m * sizeof(int64_t))
                    owned[k] = idata
                    if idata == NULL:
                        raise MemoryError()
                    for j in range(m):
                        v = col[j]
                        if type(v) is not int:
                            return None
                        overflow = 0
                        iv = PyLong_AsLongLongAndOverflow(v, &overflow)
                        if overflow or (code == 2 and (iv < -2147483648 or iv > 2147483647)):
                            return None
                        idata[j] = iv
                    c.data = idata
                    c.src = SRC_I64 if s.kind != K_NONE else SRC_NONE
                elif code == 3 or code == 4:  # float32, float64
                    fdata = <double*>malloc(m * sizeof(double))
                    owned[k] = fdata
                    if fdata == NULL:
                        raise MemoryError()
                    for j in range(m):
                        v = col[j]
                        if type(v) is not float:
                            return None
                        x = PyFloat_AS_DOUBLE(v)
                        if not isfinite(x):
                            return None
                        if code == 3:
                            f = <float>x
                            if isinf(f):
                                return None
                        fdata[j] = x
                    c.data = fdata
                    c.narrow = s.narrow
                    c.src = SRC_F64 if s.kind != K_NONE else SRC_NONE
                elif code == 5:  # bool
                    bdata = <unsigned char*>malloc(m)
                    owned[k] = bdata
                    if bdata == NULL:
                        raise MemoryError()
                    for j in range(m):
                        v = col[j]
                        if v is True:
                            bdata[j] = 1
                        elif v is False:
                            bdata[j] = 0
                        else:
                            return None
                    c.data = bdata
                    c.src = SRC_BOOL if s.kind != K_NONE else SRC_NONE
                else:
                    raise ValueError(f"unknown dtype code {code}")
                if c.src != SRC_NONE and not _renders(s.kind, c.src):
                    return None  # e.g. a string in an int-vocabulary slot: let the full path decide
            if _render_rows(self._slots, cols, self._n, n_rows, &buf, offs) < 0:
                raise MemoryError()
            for i in range(n_rows):
                result.append(PyUnicode_DecodeUTF8(buf.p + offs[i], offs[i + 1] - offs[i], "surrogatepass"))
            return result
        finally:
            if cols != NULL:
                for k in range(self._n):
                    free(cols[k].sp)
                    free(cols[k].sn)
            if owned != NULL:
                for k in range(self._n):
                    free(owned[k])
            free(owned)
            free(cols)
            free(offs)
            free(buf.p)

    def build_body(self, body, tuple names, codes, Py_ssize_t max_rows) -> object:
        """``(keys, batch)`` of an eval request's JSON body bytes, or ``None``.

        ``names[k]`` is slot ``k``'s input name (UTF-8 bytes), ``codes[k]`` its dtype code.
        ``None`` whenever the body is not the plain shape ``build_plain`` (a batch of at most
        ``max_rows`` rows) or ``KeySchema.key_if_plain`` (one row) would key: the caller then
        parses it the common way, which decides every error (``keys_body.pxi``).
        """
        return _build_body(self, body, names, codes, max_rows)

    def body_rows(self, body, tuple names, codes, tuple scales, list rows, Py_ssize_t max_rows) -> object:
        """Rows ``rows`` (indexes, in the order wanted) of a body ``build_body`` keys, one encoded
        array per slot, or ``None`` when ``build_body`` would return ``None`` or the encoder would
        refuse a value (``keys_body_rows.pxi``). ``scales[k]``: ``float(f"1e{Precision}")`` of
        slot ``k``'s input where the encoder rounds it, else 0."""
        return _body_rows(self, body, names, codes, scales, rows, max_rows)

    def build_row(self, values) -> str:
        """The key of one row given as Python (or numpy) scalars; ``None`` for empty slots."""
        cdef Py_ssize_t k
        cdef TextBuf buf = TextBuf(NULL, 0, 0)
        cdef list keep = []
        if len(values) != self._n:
            raise ValueError(f"expected {self._n} values, got {len(values)}")
        try:
            for k in range(self._n):
                if k and put_bytes(&buf, "/", 1) < 0:
                    raise MemoryError()
                self._render_scalar(&self._slots[k], values[k], &buf, keep)
            return PyUnicode_DecodeUTF8(buf.p, buf.len, "surrogatepass")
        finally:
            free(buf.p)


ctypedef fused real:
    float
    double


@cython.boundscheck(False)
cdef void _round_into(const real[::1] src, real[::1] dst, double scale, bint narrow) noexcept nogil:
    cdef Py_ssize_t i
    cdef double x
    for i in range(src.shape[0]):
        x = src[i]
        if narrow:
            x = <double>(<float>x)
        dst[i] = <real>round_scaled(x, scale, narrow)


def round_precision(values, int precision, bint narrow):
    """Round like a SLOT_FLOAT key, so the value sent to TensorFlow is the one the key names.

    Returns a new array of the input's dtype (float32 or float64). ``narrow``
    treats the values as float32 (input and result), as for float32 columns.
    """
    if not 1 <= precision <= 308:
        raise ValueError(f"precision must be 1..308, got {precision}")
    arr = np.ascontiguousarray(values)
    cdef double scale = float(f"1e{precision}")
    out = np.empty_like(arr)
    if arr.dtype == np.float32:
        _round_into[float](arr, out, scale, narrow)
    elif arr.dtype == np.float64:
        _round_into[double](arr, out, scale, narrow)
    else:
        raise TypeError(f"round_precision needs float32 or float64 values, got {arr.dtype}")
    return out


include "keys_body.pxi"
include "keys_body_rows.pxi"
