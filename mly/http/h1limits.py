"""What bounds one HTTP/1.1 connection: Go's ``ReadTimeout`` and ``MaxHeaderBytes``, a cap on
open connections, and reading that stops while answers wait to be sent.

- **Read deadline.** A request must be read whole within ``Endpoint.ReadTimeoutMs`` of its
  first byte (the first request: of the connection's accept, as in Go), else the connection
  is closed, with a 408 first when one can be written. The time a connection waits between
  requests is ``IdleTimeoutMs`` (uvicorn's keep-alive timer), not this. An NDJSON stream
  (``mly.http.stream``) has the deadline per line: from a line's first byte to its newline.
  One timer per server checks every connection (``ReadDeadlines``), not one per request:
  the hot path only stores a timestamp.
- **Header size.** A request head larger than ``MaxHeaderBytes`` plus 4 KiB (Go reads as much
  before it gives up) is answered 431 and the connection closed, also while it is still
  arriving, so an endless header line costs at most that much plus one read.
- **Open connections.** Past ``Endpoint.MaxConnections`` (HTTP/1.1 and HTTP/2 together) a new
  connection is closed at once.
- **Unsent answers.** ``GatedFlow`` keeps reading paused while the transport's send buffer is
  above its high-water mark or too many requests wait in uvicorn's pipeline queue: a client
  that pipelines and never reads holds a bounded amount of memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl

from mly.http.responses import error_body

__all__ = ["COUNTERS", "HEAD_SLACK", "ConnectionCounters", "GatedFlow", "H1Limits", "LimitedConnection", "ReadDeadlines",
           "h1_limits", "read_deadlines"]

#: Bytes of request head read past ``MaxHeaderBytes`` before a 431 (Go's server reads 4 KiB more).
HEAD_SLACK = 4096
#: Requests parsed ahead and queued behind the one being answered, past which reading stops.
MAX_PIPELINE = 16


@dataclass(frozen=True, slots=True)
class H1Limits:
    """The HTTP/1.1 connection limits of one server (from ``Endpoint``); 0 turns one off."""

    read_timeout: float = 5.0
    max_head_bytes: int = 8192 + HEAD_SLACK
    max_connections: int = 0
    max_pipeline: int = MAX_PIPELINE


#: What ``MaxHeaderBytes: 0`` means (Go's ``http.DefaultMaxHeaderBytes``).
DEFAULT_MAX_HEADER_BYTES = 1 << 20


def h1_limits(endpoint: Any) -> H1Limits:
    """From an ``EndpointConfig`` (validated: no negative values); ``ReadTimeoutMs: 0`` is no deadline."""
    return H1Limits(read_timeout=endpoint.read_timeout_ms / 1000,
                    max_head_bytes=(endpoint.max_header_bytes or DEFAULT_MAX_HEADER_BYTES) + HEAD_SLACK,
                    max_connections=endpoint.max_connections)


class ConnectionCounters:
    """Connections the limits ended, since the process started (Prometheus ``mly_http_connections_ended``)."""

    __slots__ = ("header_too_large", "read_timeout", "refused")

    def __init__(self) -> None:
        self.refused = 0
        self.read_timeout = 0
        self.header_too_large = 0

    def as_dict(self) -> dict[str, int]:
        return {"refused": self.refused, "read_timeout": self.read_timeout,
                "header_too_large": self.header_too_large}


COUNTERS = ConnectionCounters()


class GatedFlow(FlowControl):
    """uvicorn's flow control, with reading held while this connection's answers wait to be sent.

    uvicorn resumes reading whenever an answer completes and whenever the app reads the body,
    so a client that pipelines and never reads made the server parse (and answer, or queue)
    everything it sent. Here reading pauses when the send buffer passes its high-water mark and
    resumes only when it drains and fewer than ``max_pipeline`` requests are queued.
    """

    def __init__(self, transport: Any, pipeline: deque[Any], max_pipeline: int, protocol: Any) -> None:
        super().__init__(transport)
        self.pipeline = pipeline
        self.max_pipeline = max_pipeline
        self.protocol = protocol

    def pause_writing(self) -> None:
        super().pause_writing()
        self.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.resume_reading()

    def pause_reading(self) -> None:
        if not self.read_paused and not self._transport.is_closing():
            super().pause_reading()

    def resume_reading(self) -> None:
        if (self.read_paused and not self.write_paused and len(self.pipeline) < self.max_pipeline
                and not self._transport.is_closing()):
            super().resume_reading()
            self.protocol.reading_resumed()


class ReadDeadlines:
    """One periodic check per server of every connection's read deadline.

    A connection reading a request has ``read_since`` (loop time) set; one reading nothing
    (between requests, or with its reading paused by the server) is skipped. The check runs
    every quarter of the timeout (at most every 0.5 s) while the server has connections.
    """

    def __init__(self, loop: Any, connections: set[Any], timeout: float) -> None:
        self.loop = loop
        self.connections = connections
        self.timeout = timeout
        self.period = min(0.5, timeout / 4)
        self.handle: Any = None

    def ensure_running(self) -> None:
        if self.handle is None:
            self.handle = self.loop.call_later(self.period, self.check)

    def check(self) -> None:
        self.handle = None
        cutoff = self.loop.time() - self.timeout
        late = [c for c in self.connections if 0.0 < getattr(c, "read_since", 0.0) <= cutoff]
        for connection in late:
            if not connection.flow.read_paused:
                connection.read_timed_out()
        if self.connections:
            self.ensure_running()


def read_deadlines(server_state: Any, loop: Any, timeout: float) -> ReadDeadlines:
    """The server's ``ReadDeadlines`` (made with its first connection), running."""
    deadlines: ReadDeadlines | None = getattr(server_state, "mly_read_deadlines", None)
    if deadlines is None:
        deadlines = ReadDeadlines(loop, server_state.connections, timeout)
        server_state.mly_read_deadlines = deadlines
    deadlines.ensure_running()
    return deadlines


class LimitedConnection:
    """The limits' answers, for ``MlyHttpProtocol`` (uvicorn's httptools protocol underneath)."""

    limits: H1Limits
    read_since: float
    head_open: bool
    sniffed: bool
    deferred: Any
    transport: Any
    cycle: Any
    pipeline: deque[Any]
    url: bytes
    headers: list[tuple[bytes, bytes]]
    loop: Any
    framed: Callable[..., bytes]  # a whole JSON answer (``MlyHttpProtocol.framed``)

    def head_size(self) -> int:
        """Bytes of the request head just parsed (request line and header fields)."""
        return len(self.url) + 16 + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def idle_for_answer(self) -> bool:
        """No answer is owed before one to the request being read (so one may be written now)."""
        cycle = self.cycle
        if self.head_open:
            return cycle is None or cycle.response_complete
        return cycle is not None and not cycle.response_started and not self.pipeline

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (if nothing else is owed first) and close the connection."""
        if self.idle_for_answer() and not self.transport.is_closing():
            body = error_body(message)
            self.transport.write(self.framed(status, body, close=True))
        self.deferred = None
        self.read_since = 0.0
        self.transport.close()

    def refuse_head(self) -> None:
        COUNTERS.header_too_large += 1
        limit = self.limits.max_head_bytes
        self.refuse(431, f"request header larger than Endpoint.MaxHeaderBytes ({limit - HEAD_SLACK} bytes)")

    def read_timed_out(self) -> None:
        """Called by ``ReadDeadlines``: the request being read is late."""
        if self.transport.is_closing():
            return
        COUNTERS.read_timeout += 1
        if not self.sniffed or not (self.head_open or self.cycle is not None):
            self.read_since = 0.0
            self.transport.close()  # nothing (or not even the protocol) known: nothing to answer
            return
        ms = round(self.limits.read_timeout * 1000)
        self.refuse(408, f"request not read within Endpoint.ReadTimeoutMs ({ms} ms)")

    def reading_resumed(self) -> None:
        """Reading was paused by the server, not the client: the request's time starts again."""
        if self.read_since:
            self.read_since = self.loop.time()
