"""HTTP/2 connections (RFC 9113) driving the same ASGI app as HTTP/1.1.

``protocol.MlyHttpProtocol`` hands a connection here when it opens with the
HTTP/2 preface (cleartext prior knowledge, what Go's mly client sends, or TLS
with ALPN ``h2``). The ``h2`` package does the framing and HPACK; this module
turns streams into ASGI requests and keeps memory bounded:

- Request bodies: the server only hands receive window back (WINDOW_UPDATE)
  for data the app has taken with ``receive()``, so a stream holds at most its
  window and a connection at most the connection window of unread data.
- Responses: body data waits for the peer's flow-control window and for the
  socket to drain; a stream that cannot send for ``write_timeout`` seconds is
  reset, so a client that never reads cannot pin responses forever.
- While the socket's write buffer is full the server stops reading, so a peer
  that floods frames (PINGs, new streams) without reading the answers cannot
  make the server queue unbounded output.
- ``max_concurrent_streams`` is advertised in SETTINGS; a peer that opens more
  gets the connection closed with PROTOCOL_ERROR (the ``h2`` package's rule). App
  calls still running for streams the peer reset are bounded by the same number:
  at the limit the connection is not read until one finishes, and a burst that
  arrived in one read is refused (REFUSED_STREAM) past twice the limit, so "rapid
  reset" cannot pile up work. Clients that do not reset streams never meet this.
- A stream whose app waits on the peer for ``read_timeout`` seconds for one line of
  its request body is reset (CANCEL); the other streams go on.
- A malformed request is a stream error (RFC 9113 §8.1.1), never the connection's
  (``h2conn``, ``h2request``).
- A connection without open streams for ``idle_timeout`` seconds gets GOAWAY.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import unquote

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from mly.http.h2conn import ServerConnection
from mly.http.h2limits import H2Settings
from mly.http.h2request import HOP_BY_HOP, RequestHead, header_list_size, parse_request, trailers_problem
from mly.http.h2stream import Stream

__all__ = ["H2Protocol"]

log = logging.getLogger("mly.http")

_DEFAULT_WINDOW = 65535


class H2Protocol(asyncio.Protocol):
    """An HTTP/2 server connection; registers with uvicorn's server state so a
    graceful shutdown sends GOAWAY and waits for its streams."""

    def __init__(self, app: Any, server_state: Any, app_state: dict[str, Any], settings: H2Settings,
                 *, root_path: str = "") -> None:
        self.app = app
        self.server_state = server_state
        self.app_state = app_state
        self.settings = settings
        self.root_path = root_path
        self.loop = asyncio.get_event_loop()
        self.conn = ServerConnection(settings.max_header_list_size)
        self.streams: dict[int, Stream] = {}
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.scheme = "http"
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.closing = False
        self.flush_scheduled = False
        self.idle_handle: asyncio.TimerHandle | None = None
        self.running = 0  # app calls in progress, for open streams and for streams the peer reset
        self.read_paused: set[str] = set()  # why reading is paused: "write" (socket full), "apps"

    # -- asyncio protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses
        self.server_state.connections.add(self)
        self.scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        self.conn.initiate_connection()
        # Sent in the first SETTINGS frame; in force once the peer acknowledges them (RFC 9113 §6.5.3).
        # Until then h2's own limit of 100 streams holds, which is what Go's client assumes before
        # it has read them.
        self.conn.update_settings({
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.settings.max_concurrent_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.settings.stream_window,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.settings.max_header_list_size,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })
        extra = self.settings.connection_window - _DEFAULT_WINDOW
        if extra > 0:
            self.conn.increment_flow_control_window(extra)
        self.flush()
        self.arm_idle()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:  # h2 has queued GOAWAY with the reason
            log.info("HTTP/2 protocol error from %s: %s", self.client, exc)
            self.flush()
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.request_received(event)
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is None or stream.complete:
                    # The response is done (a body nobody reads): hand the window straight back.
                    self.consumed(event.stream_id, event.flow_controlled_length)
                else:
                    stream.body.append((event.data, event.flow_controlled_length))
                    stream.event.set()
            elif isinstance(event, h2.events.StreamEnded):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.ended = True
                    stream.event.set()
            elif isinstance(event, h2.events.StreamReset):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.reset = True
                    self.release(stream)
                    if self.orphans >= self.settings.max_concurrent_streams:
                        # A stream the peer resets is closed for h2 at once, but its app call runs
                        # on: opening and resetting streams ("rapid reset") could start unbounded
                        # work. Read nothing more until some of it is done.
                        self.pause_reading("apps")
                    stream.wake()
                self.arm_idle()
            elif isinstance(event, h2.events.WindowUpdated):
                if event.stream_id == 0:
                    for stream in self.streams.values():
                        stream.window.set()
                elif (stream := self.streams.get(event.stream_id)) is not None:
                    stream.window.set()
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                for stream in self.streams.values():
                    stream.window.set()
            elif isinstance(event, h2.events.TrailersReceived):
                if problem := trailers_problem(event.headers or ()):  # type: ignore[arg-type]
                    log.info("HTTP/2 stream %d from %s: malformed request: %s", event.stream_id, self.client, problem)
                    if (stream := self.streams.get(event.stream_id)) is not None:
                        self.reset_stream(stream, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                    else:
                        self.refuse(event.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            elif isinstance(event, h2.events.ConnectionTerminated):
                # The client opens no more streams but still reads the answers to its open ones
                # (Go's ClientConn.Shutdown): answer them, then close, as Go's server does.
                self.shutdown()
        self.flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.closing = True
        self.writable.set()
        for stream in self.streams.values():
            stream.reset = True
            stream.wake()
        self.streams.clear()
        if self.idle_handle is not None:
            self.idle_handle.cancel()

    def pause_writing(self) -> None:
        # Stop taking frames in too: their answers (PING ACKs, resets) would queue up unbounded.
        self.writable.clear()
        self.pause_reading("write")

    def resume_writing(self) -> None:
        self.writable.set()
        self.resume_reading("write")

    def pause_reading(self, reason: str) -> None:
        if not self.read_paused:
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()
        self.read_paused.add(reason)

    def resume_reading(self, reason: str) -> None:
        self.read_paused.discard(reason)
        if not self.read_paused:
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()

    def shutdown(self) -> None:
        """uvicorn's graceful stop: GOAWAY now, close once the open streams have answered."""
        if self.closing:
            return
        self.closing = True
        if not self.streams:
            self.conn.close_connection()
            self.flush()
            self.transport.close()
            return
        # h2's close_connection() closes its state machine, which would then refuse the rest of
        # the open streams' requests; a GOAWAY frame written by hand leaves them running
        # (RFC 9113 §6.8: streams up to last_stream_id are still processed).
        self.flush()
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = self.conn.highest_inbound_stream_id
        goaway.error_code = h2.errors.ErrorCodes.NO_ERROR
        self.transport.write(goaway.serialize())

    # -- streams ---------------------------------------------------------------------------------

    def request_received(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        if self.closing or self.orphans >= 2 * self.settings.max_concurrent_streams:
            # Shutting down, or a burst of streams the peer opened and reset within one read (see
            # below): not processed, so the peer may retry them (Go's client does).
            self.refuse(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        fields = event.headers or ()
        if header_list_size(fields) > self.settings.max_header_list_size:  # type: ignore[arg-type]
            # Decoded in full by ServerConnection; answered as Go does, the connection goes on.
            log.info("HTTP/2 stream %d from %s: header block over %d bytes", sid, self.client,
                     self.settings.max_header_list_size)
            self.answer_early(sid, 431, ended=event.stream_ended is not None)
            return
        head = parse_request(fields)  # type: ignore[arg-type]
        if (isinstance(head, RequestHead) and event.stream_ended is not None
                and head.content_length is not None and int(head.content_length) != 0):
            head = "content-length without a body"  # h2 checks it against DATA frames only
        if not isinstance(head, RequestHead):  # a malformed request is a stream error (RFC 9113 §8.1.1)
            log.info("HTTP/2 stream %d from %s: malformed request: %s", sid, self.client, head)
            self.refuse(sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        method, path, headers = head.method, head.path, head.headers
        raw_path, _, query = path.partition(b"?")
        text_path = raw_path.decode("latin-1")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "2",
            "method": method.decode("latin-1"),
            "scheme": self.scheme,
            "path": self.root_path + (unquote(text_path) if "%" in text_path else text_path),
            "raw_path": self.root_path.encode("latin-1") + raw_path,
            "query_string": query,
            "root_path": self.root_path,
            "headers": headers,
            "server": self.server,
            "client": self.client,
            "state": self.app_state.copy(),
        }
        stream = Stream(self, sid, scope)
        if event.stream_ended is not None:
            stream.ended = True
        self.streams[sid] = stream
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        task = self.loop.create_task(self.run_app(stream))
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)
        self.running += 1

    @property
    def orphans(self) -> int:
        """App calls still running for streams the peer has reset (open streams are bounded by h2)."""
        return self.running - len(self.streams)

    def refuse(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        """Reset a stream no app call was started for (the peer may have reset it already)."""
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.conn.reset_stream(stream_id, code)

    def answer_early(self, stream_id: int, status: int, *, ended: bool) -> None:
        """Answer a request the app never sees with an empty ``status`` response."""
        fields = [(b":status", str(status).encode()), *self.server_state.default_headers, (b"content-length", b"0")]
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.conn.send_headers(stream_id, fields, end_stream=True)
            if not ended:  # the answer is complete but the request is not: the peer may stop sending
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)

    async def run_app(self, stream: Stream) -> None:
        try:
            await self.call_app(stream)
        finally:
            self.running -= 1
            if "apps" in self.read_paused and self.orphans < self.settings.max_concurrent_streams:
                self.resume_reading("apps")

    async def call_app(self, stream: Stream) -> None:
        try:
            await self.app(stream.scope, stream.receive, stream.send)
        except Exception:
            log.exception("HTTP/2 stream %d: the app failed", stream.id)
            if not stream.started and not stream.reset:
                await self.send_500(stream)
            else:
                self.reset_stream(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
        else:
            if not stream.started and not stream.reset:
                log.error("HTTP/2 stream %d: the app returned without a response", stream.id)
                await self.send_500(stream)
            elif not stream.complete and not stream.reset:
                self.reset_stream(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
        finally:
            self.stream_done(stream)

    async def send_500(self, stream: Stream) -> None:
        body = b"Internal Server Error"
        await stream.send({"type": "http.response.start", "status": 500,
                           "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                       (b"content-length", str(len(body)).encode())]})
        await stream.send({"type": "http.response.body", "body": body})

    def stream_done(self, stream: Stream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
            if not stream.reset and not stream.ended:
                # The answer is complete but the request is not: tell the peer to stop sending.
                self.reset_stream(stream, h2.errors.ErrorCodes.NO_ERROR)
            self.release(stream)
        if self.closing and not self.streams:
            self.flush()
            self.transport.close()
        else:
            self.arm_idle()

    def release(self, stream: Stream) -> None:
        """Hand back the connection window that request data nobody will read still holds."""
        for _, flow_len in stream.body:
            self.consumed(stream.id, flow_len)
        stream.body.clear()

    def reset_stream(self, stream: Stream, code: h2.errors.ErrorCodes) -> None:
        stream.reset = True
        stream.wake()
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream.id, code)
        self.schedule_flush()

    def consumed(self, stream_id: int, flow_len: int) -> None:
        """The app took ``flow_len`` bytes of request data: hand that window back to the peer."""
        if flow_len and not self.transport.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.acknowledge_received_data(flow_len, stream_id)
            self.schedule_flush()

    def send_headers(self, stream: Stream, status: int, headers: Any) -> None:
        fields: list[tuple[bytes, bytes]] = [(b":status", str(status).encode())]
        fields.extend(self.server_state.default_headers)
        for name, value in headers:
            name = name.lower()
            if name not in HOP_BY_HOP:
                fields.append((name, value))
        try:
            self.conn.send_headers(stream.id, fields)
        except h2.exceptions.ProtocolError:  # the peer reset it a moment ago, or the connection failed
            stream.reset = True
            return
        self.schedule_flush()

    async def send_data(self, stream: Stream, data: bytes, *, end: bool) -> None:
        if not data and not end:
            return
        view = memoryview(data)
        while True:
            if not self.writable.is_set() and not self.closing and not await self.wait(self.writable, stream):
                self.transport.close()  # the peer stopped reading the socket altogether
                return
            if stream.reset:
                return
            try:
                window = self.conn.local_flow_control_window(stream.id)
                size = min(len(view), window, self.conn.max_outbound_frame_size)
                if size <= 0 and len(view):
                    stream.window.clear()
                    if not await self.wait(stream.window, stream):
                        self.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
                        return
                    continue
                last = size == len(view)
                self.conn.send_data(stream.id, data if last and size == len(data) else bytes(view[:size]),
                                    end_stream=end and last)
            except h2.exceptions.ProtocolError:  # reset by the peer while this waited, or the connection failed
                stream.reset = True
                return
            self.schedule_flush()
            view = view[size:]
            if last:
                return

    async def wait_for_body(self, stream: Stream) -> bool:
        """Wait for more of the request; False when the stream was reset for a stalled body.

        Go's ``ReadTimeout`` bounds the time to read a whole request. Here it bounds the time
        the app waits on the peer for one line of it (the whole body, unless it is NDJSON), so
        a streaming PUT may run for as long as its lines keep coming; time the peer spends
        waiting on the server (flow control while the app is busy) does not count.
        """
        limit = self.settings.read_timeout
        if limit <= 0:
            await stream.event.wait()
            return True
        started = self.loop.time()
        try:
            await asyncio.wait_for(stream.event.wait(), limit - stream.waited)
        except asyncio.TimeoutError:
            log.info("HTTP/2 stream %d: the peer sent no more of its request for %.1f s; resetting it",
                     stream.id, limit)
            self.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
            return False
        finally:
            stream.waited += self.loop.time() - started
        return True

    async def wait(self, event: asyncio.Event, stream: Stream) -> bool:
        """Wait for ``event`` up to the write timeout; False when it never came."""
        try:
            await asyncio.wait_for(event.wait(), self.settings.write_timeout)
        except asyncio.TimeoutError:
            log.info("HTTP/2 stream %d: the peer read nothing for %.1f s; resetting it",
                     stream.id, self.settings.write_timeout)
            return False
        return True

    # -- output and timers -----------------------------------------------------------------------

    def schedule_flush(self) -> None:
        """Write once per loop turn: the frames of all streams answered in this turn go out in one write."""
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        data = self.conn.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def arm_idle(self) -> None:
        if self.streams or self.closing or self.settings.idle_timeout <= 0:
            return
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        self.idle_handle = self.loop.call_later(self.settings.idle_timeout, self.idle)

    def idle(self) -> None:
        self.idle_handle = None
        if not self.streams and not self.transport.is_closing():
            self.closing = True
            self.conn.close_connection()
            self.flush()
            self.transport.close()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
