"""One pipelined Redis connection for the lookup path: every lookup in flight shares a socket.

Why not redis-py here: its asyncio client takes a pooled connection, a lock and a fresh
parser state per command, about 75 µs of CPU for one ``MGET`` of 32 keys, where the
lookup's own work is a few microseconds. Redis answers the commands of one connection in
order, so a FIFO of futures is all the bookkeeping a pipeline needs: a lookup writes its
packed command and waits for its reply (or its ``count`` replies), with no lock and no
pool. Replies are parsed by hiredis, the C parser redis-py itself uses.

Only reads go this way; writes, cluster routing and probes stay with redis-py. A
connection that fails (reset, refused, a reply the parser cannot read) fails every
lookup waiting on it, and the next lookup opens a new one; a lookup that failed on a
connection another lookup had already seen die is retried once on a fresh connection,
as the redis-py client of this package is configured to do. A connection whose oldest command
has waited longer than ``Timeout.Total`` is treated as dead too: a far end gone without a reset
would otherwise hold every lookup for the many minutes TCP takes to notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from typing import Any

import hiredis

from mly.cache.base import StoreUnavailableError

__all__ = ["MAX_IN_FLIGHT", "PipelinedConnection", "RespEndpoint", "pack"]

MAX_IN_FLIGHT = 20_000
"""Commands waiting for their replies on one connection; past this a lookup is refused
(a miss) instead of queueing behind a Redis that has stopped answering."""


def pack(*args: bytes | str | int) -> bytes:
    """One command in RESP (the handshake's; lookups use ``redis_wire.pack_key_command``)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespEndpoint:
    """Where and how to connect: host, port, database, credentials, TLS, timeouts."""

    def __init__(self, host: str, port: int, *, db: int = 0, username: str = "", password: str = "",
                 tls: bool = False, tls_ca_file: str = "", connect_timeout_s: float = 1.0,
                 reply_timeout_s: float = 1.0, name: str = "redis") -> None:
        self.host = host
        self.port = port
        self.db = db
        self.username = username
        self.password = password
        self.tls = tls
        self.tls_ca_file = tls_ca_file
        self.connect_timeout_s = connect_timeout_s
        self.reply_timeout_s = reply_timeout_s
        """A command unanswered this long means the connection is dead, even though it is open."""
        self.name = name

    def handshake(self) -> list[bytes]:
        """Commands sent before the first lookup: credentials, database, a client name."""
        commands: list[bytes] = []
        if self.username:
            commands.append(pack("AUTH", self.username, self.password))
        elif self.password:
            commands.append(pack("AUTH", self.password))
        if self.db:
            commands.append(pack("SELECT", self.db))
        commands.append(pack("CLIENT", "SETNAME", "mly-lookups"))
        return commands

    def ssl_context(self) -> ssl.SSLContext | None:
        """As redis-py does it: the server's certificate is verified, host name included."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.tls_ca_file or None)

    def __repr__(self) -> str:  # never the password
        return f"RespEndpoint({self.name!r}, {self.host}:{self.port}, db={self.db}, tls={self.tls})"


class _Waiter:
    __slots__ = ("count", "future", "replies", "sent_at")

    def __init__(self, future: asyncio.Future[Any], count: int, sent_at: float) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []
        self.sent_at = sent_at


class _Protocol(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.reader = hiredis.Reader()
        self.waiting: deque[_Waiter] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.outgoing: list[bytes] = []
        """Commands written by this turn of the event loop, sent together at its end: lookups
        that start together cost one ``send`` (a syscall costs more than packing a command)."""

    def write(self, packed: bytes) -> None:
        outgoing = self.outgoing
        outgoing.append(packed)
        if len(outgoing) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if outgoing and self.transport is not None and self.lost is None:
            self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        gets = reader.gets
        try:
            while True:
                reply = gets()
                if reply is False:
                    return
                if not waiting:  # a reply nobody asked for: the stream is out of step
                    raise hiredis.ProtocolError("a reply arrived that no command asked for")
                waiter = waiting[0]
                if waiter.count > 1:  # a pipeline of commands (one GET per key): collect them
                    replies = waiter.replies
                    replies.append(reply)
                    count = waiter.count
                    while len(replies) < count:
                        reply = gets()
                        if reply is False:
                            return
                        replies.append(reply)
                    reply = replies
                waiting.popleft()
                if not waiter.future.done():  # done: its lookup timed out and went away
                    waiter.future.set_result(reply)
        except hiredis.ProtocolError as exc:
            self._fail(ConnectionError(f"unreadable reply: {exc}"))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        while self.waiting:
            future = self.waiting.popleft().future
            if not future.done():
                future.set_exception(StoreUnavailableError(self.name, f"{type(exc).__name__}: {exc}"))


class PipelinedConnection:
    """Lookups of one event loop over one socket to one Redis, reopened when it dies."""

    def __init__(self, endpoint: RespEndpoint) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Future[_Protocol] | None = None
        self._closed = False

    async def call(self, packed: bytes, count: int = 1) -> Any:
        """Send ``packed`` (``count`` commands) and return its reply (a list of ``count`` replies
        when ``count > 1``). A connection that was already dead when the command went out is
        replaced and the command sent once more."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or self._stalled(protocol):
            protocol = await self._open()
        try:
            return await self._send(protocol, packed, count)
        except StoreUnavailableError:
            if protocol.lost is None or self._closed:
                raise
            fresh = await self._open()  # the retry: the old socket had died under us
            return await self._send(fresh, packed, count)

    async def resend(self, packed: bytes, count: int = 1) -> Any:
        """``packed`` once more, after ``send_now``'s connection died under it: on the connection another
        lookup has opened meanwhile, else on a fresh one. No further retry."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or self._stalled(protocol):
            protocol = await self._open()
        return await self._send(protocol, packed, count)

    def send_now(self, packed: bytes, count: int = 1, *, at_once: bool = False) -> asyncio.Future[Any] | None:
        """``call`` without a coroutine when the connection is open (``None`` when it is not):
        several connections' commands go out before the first reply is awaited. No retry.
        ``at_once``: written now, not at the end of this turn of the event loop (a caller that has
        gathered a turn's lookups itself)."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or self._stalled(protocol):
            return None
        future = self._send(protocol, packed, count)
        if at_once:
            protocol.flush()
        return future

    def ready(self) -> bool:
        """Whether ``send_now`` would send now (the connection is open, answering and not full)."""
        protocol = self._protocol
        return (protocol is not None and protocol.lost is None and not self._stalled(protocol)
                and len(protocol.waiting) < MAX_IN_FLIGHT)

    def _stalled(self, protocol: _Protocol) -> bool:
        """Its oldest command waited longer than a reply may take: a connection whose far end is gone
        without a reset (a moved address, a lost route), which TCP notices only after many minutes.
        It is failed, so the lookup goes over a new one (lookups still waiting on it, if any, retry
        there once)."""
        waiting = protocol.waiting
        if not waiting or asyncio.get_running_loop().time() - waiting[0].sent_at <= self.endpoint.reply_timeout_s:
            return False
        protocol._fail(TimeoutError(f"no reply within {self.endpoint.reply_timeout_s} s"))
        if protocol.transport is not None:
            protocol.transport.abort()
        return True

    def _send(self, protocol: _Protocol, packed: bytes, count: int) -> asyncio.Future[Any]:
        if len(protocol.waiting) >= MAX_IN_FLIGHT:
            raise TimeoutError(f"{self.name}: {MAX_IN_FLIGHT} commands already wait for Redis")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        protocol.waiting.append(_Waiter(future, count, loop.time()))
        protocol.write(packed)
        return future

    async def _open(self) -> _Protocol:
        """A fresh connection, one attempt shared by every lookup that needs it now.

        The attempt runs in a task of its own, bounded by the connect timeout: a lookup that
        reaches its deadline first stops waiting for it without cancelling it, so the other
        lookups waiting on it see its outcome, never that lookup's cancellation, and a connect
        slower than one lookup's deadline still ends in a connection for the next ones."""
        if self._closed:
            raise StoreUnavailableError(self.name, "closed")
        opening = self._opening
        if opening is None:
            self._opening = opening = asyncio.get_running_loop().create_task(self._replace())
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if opening.cancelled() and task is not None and not task.cancelling():  # aclose() stopped it
                raise StoreUnavailableError(self.name, "closed") from None
            raise

    async def _replace(self) -> _Protocol:
        try:
            protocol = await self._connect()
        except TimeoutError:  # a Redis that accepts but does not answer (paused, busy)
            raise TimeoutError(f"{self.name}: no answer to connect within {self.endpoint.connect_timeout_s} s") from None
        except StoreUnavailableError:
            raise
        except OSError as exc:
            raise StoreUnavailableError(self.name, f"{type(exc).__name__}: {exc}") from None
        finally:
            self._opening = None
        if self._closed:  # closed while connecting: nobody will use it
            assert protocol.transport is not None
            protocol.transport.abort()
            raise StoreUnavailableError(self.name, "closed")
        old, self._protocol = self._protocol, protocol
        if old is not None and old.transport is not None:
            old.transport.abort()
        return protocol

    async def _connect(self) -> _Protocol:
        endpoint = self.endpoint
        loop = asyncio.get_running_loop()
        context = endpoint.ssl_context()
        transport, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self.name), endpoint.host, endpoint.port, ssl=context,
                                   server_hostname=endpoint.host if context is not None else None),
            endpoint.connect_timeout_s,
        )
        try:
            handshake = endpoint.handshake()
            replies = await asyncio.wait_for(self._send(protocol, b"".join(handshake), len(handshake)),
                                             endpoint.connect_timeout_s)
            for reply in replies if len(handshake) > 1 else [replies]:
                if isinstance(reply, hiredis.ReplyError):
                    raise StoreUnavailableError(self.name, f"Redis refused the connection: {reply}")
        except BaseException:
            transport.abort()
            raise
        return protocol

    async def aclose(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.sleep(0)
