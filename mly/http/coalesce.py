"""One socket write per HTTP/1.1 response instead of two.

uvicorn's httptools cycle writes the status line and headers as soon as the app
sends ``http.response.start``, and the body when it sends ``http.response.body``:
two ``send`` system calls, and on loopback two wake-ups of the client, for every
answer. Profiling cached answers under load put about 60% of the server's CPU in
those two writes. ``CoalescingCycle`` keeps the head until the first body write
and sends both in one, so a small answer costs one system call.

Nothing else of uvicorn's cycle changes: it still validates the headers, decides
on keep-alive, content length and chunking, and writes later body chunks of a
streamed answer (NDJSON) as they come. A HEAD answer's head is written as soon
as its body message comes (uvicorn writes no body for it and at once starts the
next pipelined request, whose answer must not overtake it). A head with no body
to follow (a 204, a client that went away) is written before the connection
closes or when the body message ends without data.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

__all__ = ["CoalescingCycle"]


class _Collect:
    """Stands in for the transport while uvicorn writes a head: keeps the bytes."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class _HeadFirst:
    """Stands in for the transport during the first body message: the held head
    goes out with the first write (or before a close, or at the end)."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: Any, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, b""
        self.transport.write(head + data if head else data)

    def flush(self) -> None:
        if self.head:
            self.write(b"")

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CoalescingCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, writing head and first body bytes together.

    ``MlyHttpProtocol`` switches each new cycle to this class right after uvicorn
    creates it (before its ASGI task first runs).
    """

    held_head = b""

    async def send(self, message: Any) -> None:
        if not self.response_started and message["type"] == "http.response.start":
            transport = self.transport
            collect = _Collect()
            self.transport = collect  # type: ignore[assignment]  # only write() is used on this path
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self.held_head = collect.data
            return
        head = self.held_head
        if not head:
            await super().send(message)
            return
        self.held_head = b""
        transport = self.transport
        if self.scope["method"] == "HEAD":
            # No body bytes will be written, and uvicorn completes the response (which may start
            # and answer the next pipelined request) before ``send`` returns: the head goes first.
            if not self.disconnected and not transport.is_closing():
                transport.write(head)
            await super().send(message)
            return
        first = _HeadFirst(transport, head)
        self.transport = first  # type: ignore[assignment]  # forwards everything else
        try:
            await super().send(message)
        finally:
            self.transport = transport
            if not self.disconnected and not transport.is_closing():
                first.flush()
