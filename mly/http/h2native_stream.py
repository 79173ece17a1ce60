"""One HTTP/2 stream of the nghttp2 engine (``h2native``): its ASGI scope, and the ``receive``/``send``
pair of its app call.

Request body arrives as the connection hands it over and its window is given back as the app
reads it; the response head waits until the first body part so the two go to nghttp2 together
(a whole answer is one submission); a streaming answer waits while more than ``DRAIN_MARK`` bytes
of it are not framed yet.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from mly.http.h2native import NativeH2Protocol

__all__ = ["DRAIN_MARK", "H2Stream", "request_scope"]

#: Connection-specific fields that HTTP/2 forbids (RFC 9113 §8.2.2); dropped from app responses.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
#: A streaming answer's ``send`` waits while more than this is queued but not yet framed.
DRAIN_MARK = 1 << 16


def request_scope(fields: list[tuple[bytes, bytes]], scheme: str, server: tuple[str, int] | None,
                  client: tuple[str, int] | None, root_path: str, app_state: dict[str, Any]) -> dict[str, Any] | None:
    """The ASGI scope of a request nghttp2 found well-formed (RFC 9113 §8.3: pseudo-fields first,
    each once); None for CONNECT, which has no ``:path``."""
    method = path = b""
    authority = None
    headers: list[tuple[bytes, bytes]] = []
    has_host = False
    for name, value in fields:
        if name[0] == 58:  # b":"
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
        else:
            has_host = has_host or name == b"host"
            headers.append((name, value))
    if not path:
        return None
    if authority is not None and not has_host:
        headers.insert(0, (b"host", authority))
    raw_path, _, query = path.partition(b"?")
    text_path = raw_path.decode("latin-1")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "2",
        "method": method.decode("latin-1"),
        "scheme": scheme,
        "path": root_path + (unquote(text_path) if "%" in text_path else text_path),
        "raw_path": root_path.encode("latin-1") + raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "server": server,
        "client": client,
        "state": app_state.copy(),
    }


class H2Stream:
    """One request/response exchange; the ASGI ``receive``/``send`` pair of its app call."""

    __slots__ = ("app_running", "body", "complete", "conn", "drained", "ended", "front", "front_size", "head", "id",
                 "reset", "scope", "started", "wait_since", "waited", "waiter")

    def __init__(self, conn: NativeH2Protocol, stream_id: int, scope: dict[str, Any], ended: bool) -> None:
        self.conn = conn
        self.id = stream_id
        self.scope = scope
        self.body: deque[bytes] = deque()
        self.ended = ended  # the peer sent END_STREAM
        self.drained = False  # the app has read the whole request body
        self.reset = False  # either side reset the stream, or the connection is gone
        self.started = False
        self.complete = False
        self.app_running = False
        self.front = False  # the body is being collected for the connection's eval answer
        self.front_size = 0
        self.head: list[tuple[bytes, bytes]] | None = None  # response fields not submitted yet
        self.waiter: asyncio.Future[None] | None = None
        self.waited = 0.0  # seconds spent waiting for the peer's body since the last full line
        self.wait_since = 0.0  # loop time the current wait for the peer's body began

    async def wait(self) -> None:
        self.waiter = self.conn.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        while not self.body and not self.ended and not self.reset:
            self.conn.reads.start(self)
            try:
                await self.wait()
            finally:
                self.conn.reads.stop(self)
        if self.body:
            data = self.body.popleft()
            if b"\n" in data:  # a line is complete: the next one has a read timeout of its own
                self.waited = 0.0
            self.conn.consume(self.id, len(data))
            more = bool(self.body) or not self.ended
            self.drained = not more
            return {"type": "http.request", "body": data, "more_body": more}
        if self.ended and not self.reset and not self.complete and not self.drained:
            self.drained = True
            return {"type": "http.request", "body": b"", "more_body": False}
        while not self.reset and not self.complete:  # the body was read: wait for the end
            await self.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.reset:
            return
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {kind!r}")
            self.started = True
            head = [(b":status", b"%d" % message["status"]), *self.conn.server_state.default_headers]
            for name, value in message.get("headers", ()):
                name = name.lower()
                if name not in _HOP_BY_HOP:
                    head.append((name, value))
            self.head = head
            return
        if self.complete:
            raise RuntimeError(f"unexpected ASGI message {kind!r} after the response completed")
        if kind != "http.response.body":
            raise RuntimeError(f"expected ASGI message 'http.response.body', got {kind!r}")
        more = bool(message.get("more_body", False))
        body = bytes(message.get("body", b"")) if self.scope["method"] != "HEAD" else b""  # RFC 9110 §9.3.2
        conn = self.conn
        if self.head is not None:
            head, self.head = self.head, None
            sent = conn.session.respond(self.id, head, body, not more)
        else:
            sent = conn.session.send_data(self.id, body, not more)
        if not sent:  # the peer reset the stream a moment ago
            self.reset = True
            return
        conn.output(self.id)
        if not more:
            self.complete = True
            self.wake()
        else:
            while not self.reset and (unsent := conn.session.unsent(self.id)) is not None and unsent[0] > DRAIN_MARK:
                await self.wait()  # woken as frames go out, or by a reset
