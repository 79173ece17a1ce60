# cython: language_level=3
"""A server-side HTTP/2 session on libnghttp2: framing, HPACK, stream states and
flow control in C, Python called once per event that matters to the app.

``Session`` turns bytes from the socket into calls on its handler
(``mly.http.h2native.NativeH2Protocol``) and answers into bytes for the socket:

- ``on_request(stream_id, headers, end_stream)``: a request's header block,
  already checked by nghttp2 against RFC 9113 §8 (pseudo-header fields,
  connection-specific fields, lower-case names); a malformed one never gets here
  (the stream is reset with PROTOCOL_ERROR); ``headers`` is None when the block is
  larger than the advertised SETTINGS_MAX_HEADER_LIST_SIZE (a block that decodes
  to more than ``hard_header_list_size``, an HPACK bomb, ends the connection with
  ENHANCE_YOUR_CALM instead);
- ``on_data(stream_id, data)``: request body bytes. The receive window is not
  handed back until the handler calls ``consume``, so a peer can have at most a
  window of unread body in the server;
- ``on_end(stream_id)``: the peer finished the request (END_STREAM);
- ``on_close(stream_id, error_code)``: the stream is closed (answered, or reset
  by either side); nothing more happens on it;
- ``on_goaway(last_stream_id)``: the peer is going away.

Responses are submitted whole (``respond``), or as a head and body parts
(``send_data``); body bytes are framed only as the peer's windows allow, so
what waits for a window is held once, here. Handler exceptions stop the read
and are raised by ``receive`` (a callback cannot raise through C).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int32_t, uint8_t, uint32_t
from libc.string cimport memcpy

from mly._native.nghttp2_api cimport *

__all__ = ["Session", "SessionError"]


#: Stands for the fields of a header block larger than SETTINGS_MAX_HEADER_LIST_SIZE.
cdef object _OVERSIZED = object()
#: How many of the streams it reset a session remembers, to ignore the peer's HEADERS already in flight.
cdef Py_ssize_t _RESET_MEMORY = 256


class SessionError(Exception):
    """nghttp2 found the connection unusable (bad preface, flood, out of memory)."""


cdef class _Out:
    """A stream's response body not framed yet: the parts the app sent, and whether it ended."""

    cdef list parts
    cdef Py_ssize_t head  # index of the first part not wholly framed
    cdef Py_ssize_t offset  # bytes of parts[head] already framed
    cdef Py_ssize_t pending  # bytes not framed yet
    cdef Py_ssize_t sent  # bytes framed so far
    cdef bint end
    cdef bint deferred  # nghttp2 was told to wait for more (NGHTTP2_ERR_DEFERRED)
    cdef bint done  # the last DATA frame (END_STREAM) has been framed

    def __cinit__(self) -> None:
        self.parts = []


cdef ssize_t _read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                        uint32_t *data_flags, nghttp2_data_source *source, void *user_data) noexcept with gil:
    cdef _Out out = <_Out>source.ptr
    cdef Py_ssize_t n = 0, take, size
    cdef bytes part
    while <size_t>n < length and out.head < len(out.parts):
        part = <bytes>out.parts[out.head]
        size = PyBytes_GET_SIZE(part) - out.offset
        take = min(size, <Py_ssize_t>length - n)
        memcpy(buf + n, PyBytes_AS_STRING(part) + out.offset, take)
        n += take
        out.offset += take
        if out.offset == PyBytes_GET_SIZE(part):
            out.parts[out.head] = None
            out.head += 1
            out.offset = 0
    if out.head == len(out.parts):
        out.parts = []
        out.head = 0
    out.pending -= n
    out.sent += n
    if out.pending == 0:
        if out.end:
            data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
            out.done = True
        elif n == 0:
            out.deferred = True
            return NGHTTP2_ERR_DEFERRED
    return n


cdef int _fail(Session self, BaseException exc) noexcept:
    if self.error is None:
        self.error = exc
    return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int _begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user_data) noexcept with gil:
    cdef Session self = <Session>user_data
    cdef nghttp2_stream *stream
    cdef int state
    if hd.type != NGHTTP2_HEADERS:
        return 0
    if hd.stream_id > self.last_request_id:
        self.last_request_id = hd.stream_id
        return 0
    # HEADERS on a stream id not above the newest: trailers of an open stream, or a stream id
    # smaller than one already used (idle, never opened) or a closed stream. RFC 9113 §5.1.1 and
    # RFC 9113 §5.1 make the last two connection errors, as Go's server and ``h2`` treat them;
    # nghttp2 only ignores the block, and the peer would wait for an answer that never comes.
    if hd.stream_id in self.reset_ids:
        return 0  # sent before our RST_STREAM reached the peer: ignored (RFC 9113 §5.1, "closed")
    stream = nghttp2_session_find_stream(session, hd.stream_id)
    state = nghttp2_stream_get_state(stream) if stream is not NULL else NGHTTP2_STREAM_STATE_IDLE
    if state == NGHTTP2_STREAM_STATE_IDLE or state == NGHTTP2_STREAM_STATE_CLOSED:
        nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR)
    return 0


cdef int _begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept with gil:
    cdef Session self = <Session>user_data
    if frame.hd.type == NGHTTP2_HEADERS:
        self.field_bytes = 0
        if frame.headers.cat == NGHTTP2_HCAT_REQUEST:
            self.fields[frame.hd.stream_id] = []
    return 0


cdef int _header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                 const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) noexcept with gil:
    cdef Session self = <Session>user_data
    cdef object fields
    if frame.hd.type != NGHTTP2_HEADERS:
        return 0
    self.field_bytes += namelen + valuelen + 32  # RFC 9113 §6.5.2's measure
    if self.field_bytes > self.hard_field_bytes:
        # An HPACK bomb: decoding the rest would cost far more than its bytes on the wire. The
        # connection ends (RFC 9113 §10.5), as on the ``h2`` engine; nothing more is read.
        self.halted = True
        nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM)
        return NGHTTP2_ERR_PAUSE
    if frame.headers.cat != NGHTTP2_HCAT_REQUEST:
        return 0  # trailers: accepted and ignored, as the ASGI path ignores them
    fields = self.fields.get(frame.hd.stream_id)
    if fields is None or fields is _OVERSIZED:
        return 0
    if self.field_bytes > self.max_field_bytes:
        # Larger than the advertised SETTINGS_MAX_HEADER_LIST_SIZE: the rest of the block is only
        # decoded (HPACK stays in step) and the handler gets ``None`` for the fields (a 431, as Go).
        self.fields[frame.hd.stream_id] = _OVERSIZED
        return 0
    try:
        (<list>fields).append((PyBytes_FromStringAndSize(<char *>name, namelen),
                               PyBytes_FromStringAndSize(<char *>value, valuelen)))
    except BaseException as exc:
        return _fail(self, exc)
    return 0


cdef int _frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept with gil:
    cdef Session self = <Session>user_data
    cdef int32_t sid = frame.hd.stream_id
    cdef bint end = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0
    try:
        if frame.hd.type == NGHTTP2_HEADERS:
            if frame.headers.cat == NGHTTP2_HCAT_REQUEST:
                fields = self.fields.pop(sid, None)
                if fields is not None:
                    self.on_request(sid, None if fields is _OVERSIZED else fields, end)
            elif end:
                self.on_end(sid)
        elif frame.hd.type == NGHTTP2_DATA:
            if end:
                self.on_end(sid)
        elif frame.hd.type == NGHTTP2_GOAWAY:
            self.on_goaway(frame.goaway.last_stream_id)
    except BaseException as exc:
        return _fail(self, exc)
    return 0


cdef int _data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t length,
                     void *user_data) noexcept with gil:
    cdef Session self = <Session>user_data
    try:
        self.on_data(stream_id, PyBytes_FromStringAndSize(<char *>data, length))
    except BaseException as exc:
        return _fail(self, exc)
    return 0


cdef int _stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                       void *user_data) noexcept with gil:
    cdef Session self = <Session>user_data
    self.fields.pop(stream_id, None)
    self.outs.pop(stream_id, None)
    try:
        self.on_close(stream_id, error_code)
    except BaseException as exc:
        return _fail(self, exc)
    return 0


cdef class Session:
    """One server connection's HTTP/2 state (see the module docstring)."""

    cdef nghttp2_session *session
    cdef dict fields  # stream id -> the request header fields decoded so far
    cdef dict outs  # stream id -> _Out, for streams whose response has a body provider
    cdef Py_ssize_t field_bytes
    cdef Py_ssize_t max_field_bytes
    cdef Py_ssize_t hard_field_bytes
    cdef bint halted  # the connection was ended in the middle of a read: read nothing more
    cdef int32_t last_request_id  # the highest stream id a HEADERS frame came on
    cdef dict reset_ids  # the streams this side reset lately (keys, oldest first)
    cdef object error
    cdef object on_request, on_data, on_end, on_close, on_goaway

    def __cinit__(self, object handler, *, int max_concurrent_streams, int stream_window, int connection_window,
                  int max_header_list_size, Py_ssize_t hard_header_list_size) -> None:
        cdef nghttp2_session_callbacks *callbacks
        cdef nghttp2_option *option
        cdef nghttp2_settings_entry iv[4]
        cdef int rv
        self.fields = {}
        self.outs = {}
        self.reset_ids = {}
        self.max_field_bytes = max_header_list_size
        self.hard_field_bytes = hard_header_list_size
        self.on_request = handler.on_request
        self.on_data = handler.on_data
        self.on_end = handler.on_end
        self.on_close = handler.on_close
        self.on_goaway = handler.on_goaway
        if nghttp2_session_callbacks_new(&callbacks) != 0:
            raise MemoryError()
        nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, _begin_frame)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, _begin_headers)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, _header)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, _frame_recv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, _data_chunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, _stream_close)
        if nghttp2_option_new(&option) != 0:
            nghttp2_session_callbacks_del(callbacks)
            raise MemoryError()
        nghttp2_option_set_no_auto_window_update(option, 1)  # the window opens as the app reads
        rv = nghttp2_session_server_new2(&self.session, callbacks, <void *>self, option)
        nghttp2_option_del(option)
        nghttp2_session_callbacks_del(callbacks)
        if rv != 0:
            raise MemoryError()
        iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        iv[0].value = max_concurrent_streams
        iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        iv[1].value = stream_window
        iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        iv[2].value = max_header_list_size
        iv[3].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH
        iv[3].value = 0
        _check(nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, iv, 4))
        if connection_window > 65535:
            _check(nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0, connection_window))

    def __dealloc__(self) -> None:
        if self.session is not NULL:
            nghttp2_session_del(self.session)
            self.session = NULL

    def receive(self, const uint8_t[::1] data) -> None:
        """Process bytes from the peer; raises ``SessionError`` when the connection is beyond saving."""
        cdef ssize_t rv
        if self.halted:
            return
        rv = nghttp2_session_mem_recv(self.session, &data[0], data.shape[0]) if data.shape[0] else 0
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if rv < 0:
            raise SessionError(nghttp2_strerror(<int>rv).decode())

    def data_to_send(self) -> bytes:
        """Every frame ready to go, in one bytes object (b"" when there is none)."""
        cdef const uint8_t *chunk
        cdef ssize_t n = nghttp2_session_mem_send(self.session, &chunk)
        cdef list more
        if n <= 0:
            if n < 0:
                raise SessionError(nghttp2_strerror(<int>n).decode())
            return b""
        first = PyBytes_FromStringAndSize(<char *>chunk, n)
        n = nghttp2_session_mem_send(self.session, &chunk)
        if n == 0:
            return first
        more = [first]
        while n > 0:
            more.append(PyBytes_FromStringAndSize(<char *>chunk, n))
            n = nghttp2_session_mem_send(self.session, &chunk)
        if n < 0:
            raise SessionError(nghttp2_strerror(<int>n).decode())
        return b"".join(more)

    @property
    def alive(self) -> bool:
        """False once nghttp2 has nothing more to read or write (after GOAWAY went out)."""
        return bool(nghttp2_session_want_read(self.session) or nghttp2_session_want_write(self.session))

    def respond(self, int32_t stream_id, list fields, bytes body, bint end) -> bool:
        """Submit the response head (``fields`` starts with ``:status``) and its first body bytes;
        False when the stream is gone (the peer reset it)."""
        cdef Py_ssize_t count = len(fields), i
        cdef nghttp2_nv *nva = <nghttp2_nv *>PyMem_Malloc(count * sizeof(nghttp2_nv))
        cdef nghttp2_data_provider provider
        cdef _Out out = None
        cdef int rv
        if nva is NULL:
            raise MemoryError()
        try:
            for i in range(count):
                name, value = fields[i]
                nva[i].name = <uint8_t *>PyBytes_AS_STRING(name)
                nva[i].namelen = PyBytes_GET_SIZE(name)
                nva[i].value = <uint8_t *>PyBytes_AS_STRING(value)
                nva[i].valuelen = PyBytes_GET_SIZE(value)
                nva[i].flags = NGHTTP2_NV_FLAG_NONE
            if end and not body:
                rv = nghttp2_submit_response(self.session, stream_id, nva, count, NULL)
            else:
                out = _Out()
                if body:
                    out.parts.append(body)
                    out.pending = len(body)
                out.end = end
                provider.source.ptr = <void *>out
                provider.read_callback = _read_body
                self.outs[stream_id] = out
                rv = nghttp2_submit_response(self.session, stream_id, nva, count, &provider)
                if rv != 0:
                    del self.outs[stream_id]
        finally:
            PyMem_Free(nva)
        return rv == 0

    def send_data(self, int32_t stream_id, bytes body, bint end) -> bool:
        """More body for a response submitted with ``end=False``; False when the stream is gone."""
        cdef _Out out = self.outs.get(stream_id)
        if out is None or out.end:
            return False
        if body:
            out.parts.append(body)
            out.pending += len(body)
        out.end = end
        if out.deferred and (body or end):
            out.deferred = False
            nghttp2_session_resume_data(self.session, stream_id)
        return True

    def unsent(self, int32_t stream_id) -> tuple:
        """(bytes not framed yet, bytes framed so far) of a stream's body, or None when nothing waits:
        no body provider, or its last frame is out."""
        cdef _Out out = self.outs.get(stream_id)
        if out is None or out.done:
            return None
        return (out.pending, out.sent)

    def reset(self, int32_t stream_id, uint32_t code) -> None:
        """RST_STREAM (ignored by nghttp2 for a stream already closed)."""
        self.reset_ids[stream_id] = None
        if len(self.reset_ids) > _RESET_MEMORY:
            del self.reset_ids[next(iter(self.reset_ids))]
        nghttp2_submit_rst_stream(self.session, NGHTTP2_FLAG_NONE, stream_id, code)

    def consume(self, int32_t stream_id, size_t size) -> None:
        """The app took ``size`` bytes of request body: the peer may send that much more."""
        if size:
            nghttp2_session_consume(self.session, stream_id, size)  # a closed stream: the connection's part only

    def goaway(self, uint32_t code) -> None:
        """GOAWAY naming the last stream processed: the open streams still finish (RFC 9113 §6.8)."""
        nghttp2_submit_goaway(self.session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(self.session),
                              code, NULL, 0)

    def terminate(self, uint32_t code) -> None:
        """GOAWAY, after which nghttp2 reads nothing more (``alive`` turns False once it is written)."""
        nghttp2_session_terminate_session(self.session, code)

    @property
    def last_stream_id(self) -> int:
        return nghttp2_session_get_last_proc_stream_id(self.session)


cdef int _check(int rv) except -1:
    if rv != 0:
        raise SessionError(nghttp2_strerror(rv).decode())
    return 0
