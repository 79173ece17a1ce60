"""One HTTP/2 request/response exchange as the ASGI ``receive``/``send`` pair of its app call;
the connection (``h2.H2Protocol``) does the framing, flow control and timers."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mly.http.h2 import H2Protocol

__all__ = ["Stream"]


class Stream:
    """One request/response exchange; the ASGI ``receive``/``send`` pair of its app call."""

    __slots__ = (
        "body", "complete", "conn", "drained", "ended", "event", "id", "reset", "scope", "started", "waited",
        "window",
    )

    def __init__(self, conn: H2Protocol, stream_id: int, scope: dict[str, Any]) -> None:
        self.conn = conn
        self.id = stream_id
        self.scope = scope
        self.body: deque[tuple[bytes, int]] = deque()
        self.ended = False  # the peer sent END_STREAM
        self.drained = False  # the app has read the whole request body
        self.reset = False  # either side reset the stream, or the connection is gone
        self.started = False
        self.complete = False
        self.event = asyncio.Event()  # request data, END_STREAM or reset
        self.window = asyncio.Event()  # send window opened (or the stream is gone)
        self.waited = 0.0  # seconds the app has waited for the peer's body since the last full line

    async def receive(self) -> dict[str, Any]:
        while not self.body and not self.ended and not self.reset:
            self.event.clear()
            if not await self.conn.wait_for_body(self):
                break
        if self.body:
            data, flow_len = self.body.popleft()
            if b"\n" in data:  # a line is complete: the next one has a read timeout of its own
                self.waited = 0.0
            self.conn.consumed(self.id, flow_len)
            more = bool(self.body) or not self.ended
            self.drained = not more
            return {"type": "http.request", "body": data, "more_body": more}
        if self.ended and not self.reset and not self.complete and not self.drained:
            self.drained = True
            return {"type": "http.request", "body": b"", "more_body": False}
        while not self.reset and not self.complete:  # the body was read: wait for the end
            self.event.clear()
            await self.event.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.reset:
            return
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {kind!r}")
            self.started = True
            self.conn.send_headers(self, message["status"], message.get("headers", ()))
            return
        if self.complete:
            raise RuntimeError(f"unexpected ASGI message {kind!r} after the response completed")
        if kind != "http.response.body":
            raise RuntimeError(f"expected ASGI message 'http.response.body', got {kind!r}")
        more = bool(message.get("more_body", False))
        body = message.get("body", b"") if self.scope["method"] != "HEAD" else b""  # RFC 9110 §9.3.2
        await self.conn.send_data(self, body, end=not more)
        if not more:
            self.complete = True
            self.event.set()

    def wake(self) -> None:
        self.event.set()
        self.window.set()
