"""HTTP/2 connections on libnghttp2: the same app, limits and behaviour as ``h2.H2Protocol``
at a fraction of its CPU per request.

nghttp2 (``mly._native.nghttp2.Session``) does the framing, HPACK, stream states,
flow control and the request checks of RFC 9113 §8; this module is called once per
request head, body chunk and stream close, and keeps the server's bounds:

- Request bodies: receive window is handed back only for data the app has taken
  (``receive()``), so unread data is bounded by the stream and connection windows.
- Responses are submitted whole (or in the parts a streaming answer sends); nghttp2
  frames them as the peer's windows allow. A stream whose answer makes no progress
  for ``write_timeout`` seconds is reset (CANCEL). A socket that stays full that long
  is closed, and while it is full nothing more is read.
- ``max_concurrent_streams`` is advertised; a peer that opens more once it has
  acknowledged the limit gets the connection closed with PROTOCOL_ERROR (nghttp2's
  rule, as ``h2``'s). App calls still running for streams the peer reset ("rapid reset")
  are bounded as in ``h2.py``: reading stops at the limit, and past twice the limit
  new streams are refused.
- Eval POSTs take the connection's short path, as on HTTP/1.1 (``protocol.py``): a
  body up to ``front_body_limit`` is collected and answered from the memo at once, or
  by ``EvalFastPath.answer_post`` in a small task; anything else is an ASGI call.
- Frames of every stream answered in one loop turn go out in one write.
- A stream whose request body the server waits on for ``read_timeout`` seconds for one
  line (the whole body, unless it is NDJSON) is reset (CANCEL), as in ``h2.py``
  (``h2native_reads``).
- A connection without open streams for ``idle_timeout`` seconds gets GOAWAY; a
  graceful stop sends GOAWAY and closes once the open streams are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from mly._native.nghttp2 import Session, SessionError
from mly.http.fast import EvalFastPath, eval_model_id
from mly.http.h2limits import H2Settings, hard_header_limit
from mly.http.h2native_reads import ReadWatch
from mly.http.h2native_stream import DRAIN_MARK, H2Stream, request_scope
from mly.http.responses import error_body
from mly.service.body_hits import BodyLookup

__all__ = ["NativeH2Protocol"]

log = logging.getLogger("mly.http")

#: RFC 9113 §7 error codes.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL = 0x0, 0x1, 0x2, 0x7, 0x8
_JSON = (b"content-type", b"application/json")


class NativeH2Protocol(asyncio.Protocol):
    """An HTTP/2 server connection on libnghttp2; registers with uvicorn's server state so a
    graceful shutdown sends GOAWAY and waits for its streams."""

    def __init__(self, app: Any, server_state: Any, app_state: dict[str, Any], settings: H2Settings,
                 *, root_path: str = "") -> None:
        self.app = app
        self.server_state = server_state
        self.app_state = app_state
        self.settings = settings
        self.root_path = root_path
        self.loop = asyncio.get_event_loop()
        front = app
        while isinstance(front, ProxyHeadersMiddleware):
            front = front.app
        self.front = front if isinstance(front, EvalFastPath) and front.front_body_limit else None
        self.session = Session(self, max_concurrent_streams=settings.max_concurrent_streams,
                               stream_window=settings.stream_window, connection_window=settings.connection_window,
                               max_header_list_size=settings.max_header_list_size,
                               hard_header_list_size=hard_header_limit(settings.max_header_list_size))
        self.streams: dict[int, H2Stream] = {}
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.scheme = "http"
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.writable = True
        self.closing = False
        self.receiving = False  # inside ``data_received``: it flushes at its end
        self.flush_scheduled = False
        self.watched: set[int] = set()  # streams whose answer may still wait for a window
        self.stalls: dict[int, asyncio.TimerHandle] = {}
        self.reads = ReadWatch(self.loop, settings.read_timeout, self.read_overdue)
        self.idle_handle: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.write_handle: asyncio.TimerHandle | None = None
        self.orphans = 0  # app calls still running for streams that are closed (reset by the peer)
        self.read_paused: set[str] = set()  # why reading is paused: "write" (socket full), "apps"

    # -- asyncio protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses
        self.server_state.connections.add(self)
        self.scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        self.flush()
        self.arm_idle()

    def data_received(self, data: bytes) -> None:
        self.receiving = True
        try:
            self.session.receive(data)
        except SessionError as exc:
            log.info("HTTP/2 connection from %s: %s", self.client, exc)
            self.flush()
            self.transport.close()
            return
        except Exception:
            log.exception("HTTP/2 connection from %s: closed after an internal error", self.client)
            self.transport.close()
            return
        finally:
            self.receiving = False
        self.flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.closing = True
        self.writable = True
        for stream in self.streams.values():
            stream.reset = True
            if stream.app_running and not stream.front:
                self.orphans += 1  # balanced by ``app_done``
            stream.wake()
        self.streams.clear()
        self.reads.close()
        for handle in (self.idle_handle, self.write_handle, *self.stalls.values()):
            if handle is not None:
                handle.cancel()
        self.stalls.clear()

    def pause_writing(self) -> None:
        # Stop taking frames in too: their answers (PING ACKs, resets) would queue up unbounded.
        self.writable = False
        self.pause_reading("write")
        self.write_handle = self.loop.call_later(self.settings.write_timeout, self.write_stalled)

    def resume_writing(self) -> None:
        self.writable = True
        if self.write_handle is not None:
            self.write_handle.cancel()
            self.write_handle = None
        self.resume_reading("write")
        self.flush()

    def write_stalled(self) -> None:
        self.write_handle = None
        log.info("HTTP/2 connection from %s: the peer read nothing for %.1f s; closing it",
                 self.client, self.settings.write_timeout)
        self.transport.close()

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
        if self.go_away():
            self.flush()

    def go_away(self) -> bool:
        """GOAWAY queued (not written: a Session callback may not write); close once the open
        streams have answered. False when the connection was already going away."""
        if self.closing:
            return False
        self.closing = True
        if self.streams:
            self.session.goaway(NO_ERROR)  # names the last stream taken: those still finish
        else:
            self.session.terminate(NO_ERROR)
        return True

    # -- Session callbacks -----------------------------------------------------------------------

    def on_request(self, sid: int, fields: list[tuple[bytes, bytes]] | None, end: bool) -> None:
        if self.closing or self.orphans >= 2 * self.settings.max_concurrent_streams:
            # Shutting down, or a burst of streams the peer opened and reset within one read:
            # not processed, so the peer may retry them (Go's client does).
            self.session.reset(sid, REFUSED_STREAM)
            return
        if fields is None:  # more header bytes than advertised: Go's server answers 431 too
            log.info("HTTP/2 stream %d from %s: header fields over %d bytes", sid, self.client,
                     self.settings.max_header_list_size)
            stream = self.streams[sid] = H2Stream(self, sid, {"method": ""}, end)
            self.respond(stream, 431, b"Request Header Fields Too Large", b"text/plain; charset=utf-8")
            return
        scope = request_scope(fields, self.scheme, self.server, self.client, self.root_path, self.app_state)
        if scope is None:  # CONNECT: nothing here tunnels
            log.info("HTTP/2 stream %d from %s: CONNECT refused", sid, self.client)
            self.session.reset(sid, PROTOCOL_ERROR)
            return
        stream = H2Stream(self, sid, scope, end)
        self.streams[sid] = stream
        if self.front is not None and not end and scope["method"] == "POST" and eval_model_id(scope["path"]):
            stream.front = True  # answered by ``answer`` once the body is in
            stream.app_running = True
            self.reads.start(stream)
            return
        self.start_app(stream)

    def on_data(self, sid: int, data: bytes) -> None:
        stream = self.streams.get(sid)
        if stream is None or stream.complete or not stream.app_running:
            self.consume(sid, len(data))  # nobody will read it: hand the window straight back
            return
        stream.body.append(data)
        if stream.front:
            stream.front_size += len(data)
            if stream.front_size > self.front.front_body_limit:  # type: ignore[union-attr]
                self.reads.stop(stream)  # the app's ``receive`` waits from now on
                stream.front = False
                stream.app_running = False
                self.start_app(stream)
            return
        stream.wake()

    def on_end(self, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream.ended = True
        if stream.front:
            self.reads.stop(stream)
            stream.front = False
            self.answer(stream)
        else:
            stream.wake()

    def on_close(self, sid: int, code: int) -> None:
        stall = self.stalls.pop(sid, None)
        if stall is not None:
            stall.cancel()
        self.watched.discard(sid)
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        self.reads.stop(stream)
        if not stream.complete:
            stream.reset = True
            stream.wake()
        if stream.app_running and not stream.front:  # a body still being collected has no app call yet
            self.orphans += 1
            if self.orphans >= self.settings.max_concurrent_streams:
                # Opening and resetting streams ("rapid reset") could start unbounded work: read
                # nothing more until some of it is done.
                self.pause_reading("apps")
        unread = sum(map(len, stream.body))
        stream.body.clear()
        self.consume(sid, unread)
        if self.closing and not self.streams:
            self.schedule_flush()
        else:
            self.arm_idle()

    def on_goaway(self, last_stream_id: int) -> None:
        # The client opens no more streams but still reads the answers to its open ones (Go's
        # ClientConn.Shutdown): answer them, then GOAWAY and close, as Go's server does.
        self.go_away()

    # -- app calls -------------------------------------------------------------------------------

    def start_app(self, stream: H2Stream) -> None:
        stream.app_running = True
        self.track(self.loop.create_task(self.run_app(stream)))

    def track(self, task: asyncio.Task[None]) -> None:
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)

    async def run_app(self, stream: H2Stream) -> None:
        try:
            await self.app(stream.scope, stream.receive, stream.send)
        except Exception:
            log.exception("HTTP/2 stream %d: the app failed", stream.id)
            if not stream.started and not stream.reset:
                self.respond(stream, 500, b"Internal Server Error", b"text/plain; charset=utf-8")
            elif not stream.complete and not stream.reset:
                self.reset(stream, INTERNAL_ERROR)
        else:
            if not stream.reset and (not stream.started or stream.head is not None):
                log.error("HTTP/2 stream %d: the app returned without a response", stream.id)
                self.respond(stream, 500, b"Internal Server Error", b"text/plain; charset=utf-8")
            elif not stream.complete and not stream.reset:
                self.reset(stream, INTERNAL_ERROR)
        finally:
            self.app_done(stream)

    def answer(self, stream: H2Stream) -> None:
        """An eval POST whose whole body is in: from the memo now, else in a small task."""
        body = b"".join(stream.body)
        stream.body.clear()
        self.consume(stream.id, len(body))
        path = stream.scope["path"]
        answer, lookup = self.front.answer_now(path, body)  # type: ignore[union-attr]
        if answer is not None:
            stream.app_running = False
            self.respond(stream, 200, answer)
            return
        self.track(self.loop.create_task(self.answer_post(stream, path, body, lookup)))

    async def answer_post(self, stream: H2Stream, path: str, body: bytes, lookup: BodyLookup | None = None) -> None:
        try:
            status, answer = await self.front.answer_post(path, body, lookup)  # type: ignore[union-attr]
        except Exception:  # answer_post turns every request error into an answer: this is a bug
            log.exception("HTTP/2 stream %d: the eval answer failed", stream.id)
            status, answer = 500, error_body("internal error")
        try:
            if not stream.reset:
                self.respond(stream, status, answer)
        finally:
            self.app_done(stream)

    def app_done(self, stream: H2Stream) -> None:
        stream.app_running = False
        if self.streams.get(stream.id) is stream:
            unread = sum(map(len, stream.body))  # the answer is out: nobody reads the rest
            stream.body.clear()
            self.consume(stream.id, unread)
        else:
            self.orphans -= 1
            if "apps" in self.read_paused and self.orphans < self.settings.max_concurrent_streams:
                self.resume_reading("apps")

    def respond(self, stream: H2Stream, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
        """A whole answer written by the connection (no ASGI messages)."""
        head = [(b":status", b"%d" % status), *self.server_state.default_headers,
                _JSON if content_type == b"application/json" else (b"content-type", content_type),
                (b"content-length", b"%d" % len(body))]
        stream.started = stream.complete = True
        stream.head = None
        if self.session.respond(stream.id, head, body if stream.scope["method"] != "HEAD" else b"", True):
            self.output(stream.id)
        else:
            stream.reset = True
        stream.wake()

    def reset(self, stream: H2Stream, code: int) -> None:
        stream.reset = True
        stream.wake()
        self.session.reset(stream.id, code)
        self.schedule_flush()

    def consume(self, sid: int, size: int) -> None:
        """The app took ``size`` bytes of request data: hand that window back to the peer."""
        if size and not self.transport.is_closing():
            self.session.consume(sid, size)
            self.schedule_flush()

    # -- output and timers -----------------------------------------------------------------------

    def output(self, sid: int) -> None:
        self.watched.add(sid)
        self.schedule_flush()

    def schedule_flush(self) -> None:
        """Write once per loop turn: the frames of all streams answered in this turn go out in one write."""
        if not self.flush_scheduled and not self.receiving:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.transport.is_closing() or not self.writable:
            return  # ``resume_writing`` flushes
        try:
            data = self.session.data_to_send()
        except SessionError as exc:
            log.info("HTTP/2 connection from %s: %s", self.client, exc)
            self.transport.close()
            return
        if data:
            self.transport.write(data)
        if self.watched:
            self.check_output()
        if not self.session.alive or (self.closing and not self.streams):
            self.transport.close()

    def check_output(self) -> None:
        """After a write: answers fully out are done; the rest wait for the peer's window, at
        most ``write_timeout`` without progress."""
        for sid in tuple(self.watched):
            stream = self.streams.get(sid)
            unsent = self.session.unsent(sid)
            if unsent is None:
                self.watched.discard(sid)
                if stream is not None and not stream.ended and not stream.reset:
                    # The answer is out but the request is not: tell the peer to stop sending. Only
                    # now: RST_STREAM goes out ahead of queued frames and would drop the answer.
                    self.session.reset(sid, NO_ERROR)
                    self.schedule_flush()
                continue
            if stream is not None and unsent[0] <= DRAIN_MARK:
                stream.wake()
            if sid not in self.stalls:
                self.stalls[sid] = self.loop.call_later(self.settings.write_timeout, self.stalled, sid, unsent[1])

    def stalled(self, sid: int, sent_before: int) -> None:
        self.stalls.pop(sid, None)
        unsent = self.session.unsent(sid)
        if unsent is None:
            return
        if unsent[1] != sent_before:  # progress: look again later
            self.stalls[sid] = self.loop.call_later(self.settings.write_timeout, self.stalled, sid, unsent[1])
            return
        log.info("HTTP/2 stream %d: the peer read nothing for %.1f s; resetting it", sid, self.settings.write_timeout)
        stream = self.streams.get(sid)
        if stream is not None:
            stream.reset = True
            stream.wake()
        self.session.reset(sid, CANCEL)
        self.schedule_flush()

    def read_overdue(self, stream: H2Stream) -> None:
        """The peer sent no more of ``stream``'s request for ``read_timeout`` seconds (``ReadWatch``)."""
        log.info("HTTP/2 stream %d: the peer sent no more of its request for %.1f s; resetting it",
                 stream.id, self.settings.read_timeout)
        if stream.front:  # no app call: nothing more will read the body
            stream.front = stream.app_running = False
        self.reset(stream, CANCEL)

    def arm_idle(self) -> None:
        """The connection has no open stream from now: GOAWAY after ``idle_timeout`` unless one opens.
        One timer per idle period at most, not one per request: ``idle`` looks again when it fires."""
        if self.streams or self.closing or self.settings.idle_timeout <= 0:
            return
        self.idle_since = self.loop.time()
        if self.idle_handle is None:
            self.idle_handle = self.loop.call_later(self.settings.idle_timeout, self.idle)

    def idle(self) -> None:
        self.idle_handle = None
        if self.streams or self.closing or self.transport.is_closing():
            return  # a stream closing later arms the timer again
        left = self.idle_since + self.settings.idle_timeout - self.loop.time()
        if left > 0:
            self.idle_handle = self.loop.call_later(left, self.idle)
            return
        self.closing = True
        self.session.terminate(NO_ERROR)
        self.flush()
        self.transport.close()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
