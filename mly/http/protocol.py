"""One port for HTTP/1.1 and HTTP/2: uvicorn's httptools protocol that first
looks at how a connection opens.

The decision is made once per connection, never per request:

- The HTTP/2 connection preface (cleartext prior knowledge, as Go's mly client
  sends, or TLS after ALPN ``h2``) hands the connection to ``h2.H2Protocol``.
- Anything else stays uvicorn's ``HttpToolsProtocol`` (the measured fast path),
  with each response's head and body written together (``coalesce.CoalescingCycle``).
  Once the first request's head is parsed, the transport is pointed straight at
  ``feed`` (uvicorn's ``data_received`` plus the head-size bound), so later
  requests pay nothing for this. The HTTP/1.1 limits (read deadline, head size,
  open connections, reading paused for unsent answers) are ``h1limits``'s.
- ``Upgrade: h2c`` on HTTP/1.1 (what ``curl --http2`` sends on cleartext) is
  declined, which RFC 9110 allows and RFC 9113 §3.1 recommends (it deprecates
  the upgrade): the request is served as plain HTTP/1.1 with its body intact.
  llhttp stops at the head of an upgrade request and treats the body as the new
  protocol's bytes, so the head is rebuilt without the upgrade and parsed again
  together with what followed it. A client that asks for the upgrade on a later
  request of a keep-alive connection (none known does) gets a 400 saying so.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
from typing import Any

import httptools
import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from mly.config.schema import EndpointConfig
from mly.http.coalesce import CoalescingCycle
from mly.http.fast import EvalFastPath, eval_model_id
from mly.http.h1limits import COUNTERS, GatedFlow, H1Limits, LimitedConnection, h1_limits, read_deadlines
from mly.http.h2engine import connection_class, h2_engine, native_available
from mly.http.h2limits import PREFACE, H2Settings, h2_available
from mly.http.plain import PlainRequests
from mly.http.stream import is_ndjson
from mly.service.body_hits import BodyLookup

__all__ = ["PROTOCOL_ENV", "TLS12_CIPHERS", "MlyHttpProtocol", "MlyUvicornConfig", "h1_limits", "h2_settings",
           "protocol_class"]

log = logging.getLogger("mly.http")

#: Header fields that only carry the upgrade offer; dropped when it is declined.
_UPGRADE_FIELDS = frozenset({b"upgrade", b"http2-settings"})
_UPGRADE_TOKENS = frozenset({b"upgrade", b"http2-settings"})
_CLOSE = b"connection: close\r\n"
_JSON_LENGTH = b"content-type: application/json\r\ncontent-length: "


class MlyHttpProtocol(PlainRequests, LimitedConnection, HttpToolsProtocol):
    """Pass as ``uvicorn.Config(http=functools.partial(MlyHttpProtocol, h2=settings))``."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, h2: H2Settings | None = None,
                 h1: H1Limits | None = None, h2_engine: str = "h2") -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.h2_settings = h2 if h2 is not None else H2Settings()
        self.h2_engine = h2_engine
        self.limits = h1 if h1 is not None else H1Limits()
        # Reading a request (``mly.http.h1limits``): since when (loop time; 0.0 = not reading one),
        # whether its head is unfinished, and how many bytes that head may have so far.
        self.read_since = 0.0
        self.head_open = False
        self.head_fresh = False  # the head began in the bytes being parsed now
        self.head_upper = 0  # at most this many bytes of head so far (the reads it spans)
        self.head_grown = 0  # bytes of head read after the read it began in
        self.fed = 0  # bytes of the read being parsed
        self.line_deadline = False  # an NDJSON stream: the read deadline is per line
        self.opening = b""  # the first bytes, while they could still be the HTTP/2 preface
        self.sniffed = False
        self.settled = False  # the first request's head is parsed: ``feed`` takes every read
        # Eval POSTs are answered here only when nothing but uvicorn's proxy-headers rewrite
        # (which eval does not read) stands before mly's app: middleware someone wrapped
        # around it must see every request.
        front = self.app
        while isinstance(front, ProxyHeadersMiddleware):
            front = front.app
        self.front = front if isinstance(front, EvalFastPath) and front.front_body_limit else None
        self.deferred: tuple[RequestResponseCycle, Any] | None = None
        self.plain_init()
        self.head_source: list[tuple[bytes, bytes]] | None = None
        self.heads: dict[int, bytes] = {}

    def data_received(self, data: bytes) -> None:
        """Only until the first request's head is parsed (see ``settle``)."""
        if not self.sniffed:
            data = self.opening + data
            if len(data) < len(PREFACE) and PREFACE.startswith(data):
                self.opening = data
                return
            self.opening = b""
            self.sniffed = True
            if data.startswith(PREFACE) and self.h2_settings.enabled:
                self.switch_to_h2(data)
                return
        self.feed(data)
        if (self.cycle is not None or self.plain_answered) and self.parser is not None:
            self.settle()

    def settle(self) -> None:
        """From now on the transport calls ``feed`` directly."""
        self.settled = True
        self.data_received = self.feed  # type: ignore[method-assign]
        if not self.transport.is_closing():
            self.transport.set_protocol(self)  # uvloop caches the bound method when the protocol is set

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self.limits
        full = limits.max_connections and len(self.connections) >= limits.max_connections
        super().connection_made(transport)
        if full:
            COUNTERS.refused += 1
            self.connections.discard(self)
            transport.close()
            return
        self.flow = GatedFlow(transport, self.pipeline, limits.max_pipeline, self)
        if limits.read_timeout:
            self.read_since = self.loop.time()  # as Go: the first request's time runs from the accept
            read_deadlines(self.server_state, self.loop, limits.read_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A request is in progress: no keep-alive timer (one answered from the same read armed it).
        self._unset_keepalive_if_required()
        if not self.read_since and self.limits.read_timeout:
            self.read_since = self.loop.time()
        self.head_open = self.head_fresh = True
        self.head_upper = self.fed
        self.head_grown = 0
        self.line_deadline = False

    def on_headers_complete(self) -> None:
        if self.head_upper > self.limits.max_head_bytes and self.head_size() > self.limits.max_head_bytes:
            self.refuse_head()
            raise _HeadRefused
        self.head_open = False
        super().on_headers_complete()
        if self.scope["method"] == "PUT" and is_ndjson(self.headers):
            self.line_deadline = True
            self.read_since = 0.0  # until a line begins
        cycle = self.cycle
        if cycle is not None and type(cycle) is RequestResponseCycle:
            # The new cycle's task has not run yet: it will send through the subclass.
            cycle.__class__ = CoalescingCycle

    # --- eval answers written by the connection --------------------------------------------
    #
    # An eval POST needs none of the ASGI machinery: no receive/send messages, no
    # middleware, no per-request cycle task. So a keep-alive POST to an eval path waits
    # (without a task) until its body is complete, up to ``front_body_limit`` bytes. A
    # memo hit is then written at once; anything else runs ``EvalFastPath.answer_post`` in
    # a small task that writes its answer itself. Other requests (GET, PUT, a larger body,
    # ``Expect: 100-continue``, a connection that is closing) take uvicorn's task as usual.

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        scope = cycle.scope
        if (self.front is not None and app is self.app and scope["method"] == "POST" and cycle.keep_alive
                and not cycle.waiting_for_100_continue and eval_model_id(scope["path"])):
            if cycle.more_body:
                self.deferred = (cycle, app)
                return
            # A pipelined request's body may have arrived whole while it waited: one past the
            # limit goes to the ASGI path, which answers 413 as for the same body alone.
            if len(cycle.body) <= self.front.front_body_limit and self.answer(cycle):
                return
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self.line_deadline and self.limits.read_timeout:
            if body[-1:] == b"\n":
                self.read_since = 0.0  # no line begun
            elif not self.read_since or b"\n" in body:
                self.read_since = self.loop.time()  # a line began in this chunk
        deferred = self.deferred
        if deferred is not None and len(deferred[0].body) > self.front.front_body_limit:  # type: ignore[union-attr]
            self.deferred = None
            super()._start_asgi_task(*deferred)

    def on_message_complete(self) -> None:
        self.read_since = 0.0
        super().on_message_complete()
        deferred = self.deferred
        if deferred is not None:
            self.deferred = None
            if not self.answer(deferred[0]):
                super()._start_asgi_task(*deferred)

    def answer(self, cycle: RequestResponseCycle) -> bool:
        """Answer a complete eval POST here; False leaves it to uvicorn's ASGI path."""
        assert self.front is not None
        if not cycle.keep_alive:  # the server began stopping: uvicorn's path closes the connection after
            return False
        if not self.flow.write_paused:  # else the client is not reading: the task waits for it
            body, lookup = self.front.answer_now(cycle.scope["path"], cycle.body)
            if body is not None:
                self.write_answer(cycle, 200, body)
                return True
        else:
            lookup = None
        task = self.loop.create_task(self.answer_post(cycle, lookup))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        return True

    async def answer_post(self, cycle: RequestResponseCycle, lookup: BodyLookup | None = None) -> None:
        assert self.front is not None
        status, body = await self.front.answer_post(cycle.scope["path"], cycle.body, lookup)
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()  # the client stopped reading: wait, as uvicorn's send does
        if cycle.disconnected or self.transport.is_closing():
            return  # the client is gone (a pipelined request may hold ``self.cycle`` by now)
        self.write_answer(cycle, status, body)

    def write_answer(self, cycle: RequestResponseCycle, status: int, body: bytes) -> None:
        """The whole answer in one write; the connection closes after it when the server began
        stopping while the request ran (``keep_alive`` turned off)."""
        close = not cycle.keep_alive
        self.transport.write(self.framed(status, body, close=close))
        cycle.response_started = cycle.response_complete = True
        if close:
            self.transport.close()
        self.on_response_complete()

    def framed(self, status: int, body: bytes, *, close: bool = False) -> bytes:
        """A whole JSON answer: status line, uvicorn's default headers (date, server), content
        type and length, then ``body``."""
        defaults = self.server_state.default_headers  # a new list whenever uvicorn's date changes
        if defaults is not self.head_source:
            self.head_source = defaults
            self.heads = {}
        prefix = self.heads.get(status)
        if prefix is None:
            prefix = self.heads[status] = b"".join([STATUS_LINE[status], *(n + b": " + v + b"\r\n" for n, v in defaults)])
        return prefix + (_CLOSE if close else b"") + _JSON_LENGTH + b"%d\r\n\r\n%s" % (len(body), body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.deferred = None
        self.read_since = 0.0
        super().connection_lost(exc)
        self.__dict__.pop("data_received", None)  # the bound method ``settle`` stored is a reference cycle

    def feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, with the head-size bound and the h2c upgrade declined."""
        self._unset_keepalive_if_required()
        if self.backlog is not None:  # a plain request is being answered: this waits for it
            self.hold(data)
            return
        if self.plain and self.between_requests():
            taken = self.answer_plain(data)
            if taken:
                if taken == len(data):
                    return
                data = data[taken:]
        self.fed = len(data)
        if self.head_open:
            self.head_upper += self.fed
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport.is_closing():  # a limit answered it (``_HeadRefused``)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade as exc:
            if not self.settled and self._get_upgrade() == b"h2c":
                self.decline_upgrade(data[exc.args[0]:] if exc.args else b"")
            elif self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.head_open:
            if self.head_fresh:
                self.head_fresh = False
            else:
                self.head_grown += self.fed
                if self.head_grown > self.limits.max_head_bytes:
                    self.refuse_head()

    def decline_upgrade(self, rest: bytes) -> None:
        """Parse the request again without its upgrade offer, followed by its body and what came after."""
        head = [self.scope["method"].encode(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            if name in _UPGRADE_FIELDS:
                continue
            if name == b"connection":
                tokens = [t.strip() for t in value.split(b",")]
                value = b", ".join(t for t in tokens if t.lower() not in _UPGRADE_TOKENS)
                if not value:
                    continue
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.feed(b"".join(head) + rest)

    def _should_upgrade(self) -> bool:
        # Called only for requests that carry Upgrade. Saying yes to h2c makes uvicorn skip
        # the request (no half-read cycle); ``feed`` or ``handle_websocket_upgrade`` takes over.
        if self._get_upgrade() == b"h2c":
            return True
        return super()._should_upgrade()

    def handle_websocket_upgrade(self) -> None:
        if self._get_upgrade() == b"h2c":  # reached only after ``settle``: a later request's offer
            self.send_400_response("Upgrade: h2c is only accepted on the first request of a connection")
            return
        super().handle_websocket_upgrade()

    def switch_to_h2(self, data: bytes) -> None:
        self.connections.discard(self)
        protocol = connection_class(self.h2_engine)(self.app, self.server_state, self.app_state, self.h2_settings,
                              root_path=self.root_path)
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        protocol.data_received(data)


class _HeadRefused(Exception):
    """Raised in a parser callback to stop parsing a connection a limit has just closed."""


def h2_settings(endpoint: EndpointConfig, *, enabled: bool | None = None) -> H2Settings:
    """The HTTP/2 limits from ``Endpoint`` (``enabled`` overrides ``Endpoint.HTTP2``, e.g. ``--no-http2``)."""
    write_ms = endpoint.write_timeout // 1_000_000 if endpoint.write_timeout > 0 else endpoint.write_timeout_ms
    wanted = endpoint.http2 if enabled is None else enabled
    if wanted and not h2_available() and not native_available():
        log.warning("HTTP/2 needs the h2 package (pip install 'mly[http2]') or mly built with libnghttp2; "
                    "serving HTTP/1.1 only")
        wanted = False
    return H2Settings(
        enabled=wanted,
        max_concurrent_streams=endpoint.http2_max_concurrent_streams,
        stream_window=endpoint.http2_stream_window,
        connection_window=endpoint.http2_connection_window,
        idle_timeout=endpoint.idle_timeout_s,
        write_timeout=max(1.0, write_ms / 1000),
        read_timeout=max(0, endpoint.read_timeout_ms) / 1000,
        max_header_list_size=endpoint.max_header_bytes + 2048,  # HPACK counts 32 bytes more per field
    )


#: Set to ``httptools`` to serve with uvicorn's plain protocol (HTTP/1.1 only): the A/B switch
#: for measuring what the first-bytes check costs (docs/performance.md). Not for production:
#: it brings back uvicorn's loss of ``Upgrade: h2c`` request bodies and drops every HTTP/1.1
#: limit of ``mly.http.h1limits`` (read deadline, head size, open connections, unsent answers).
PROTOCOL_ENV = "MLY_HTTP_PROTOCOL"


def protocol_class(settings: H2Settings, limits: H1Limits | None = None) -> Any:
    """What ``uvicorn.Config(http=...)`` takes: a picklable callable (``--workers`` spawns)."""
    if os.environ.get(PROTOCOL_ENV) == "httptools":
        return "httptools"
    return functools.partial(MlyHttpProtocol, h2=settings, h1=limits, h2_engine=h2_engine())


class MlyUvicornConfig(uvicorn.Config):
    """uvicorn's config with ALPN on its TLS context: ``h2`` (when enabled) and ``http/1.1``.

    uvicorn builds the ``SSLContext`` in ``load()`` (in each worker), so the
    protocols are set there, and only ciphers HTTP/2 allows (RFC 9113 §9.2.2)
    on TLS 1.2; TLS 1.3 suites are all allowed.
    """

    def __init__(self, *args: Any, alpn: tuple[str, ...] = ("h2", "http/1.1"), **kwargs: Any) -> None:
        self.alpn = alpn
        super().__init__(*args, **kwargs)

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
            self.ssl.set_ciphers(TLS12_CIPHERS)
            self.ssl.set_alpn_protocols(list(self.alpn))


#: TLS 1.2 suites with forward secrecy and AEAD (the ones HTTP/2 permits).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
