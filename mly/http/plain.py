"""Plain eval POSTs answered by the HTTP/1.1 connection without llhttp or uvicorn's cycle.

Why: a cached eval answer costs a few microseconds, while taking its request through
llhttp's callbacks and uvicorn's per-request objects (scope, header list, cycle, task,
keep-alive bookkeeping) cost several times that in Python; so did a store lookup's or a
miss's request. Most requests a serving fleet sees have one shape: a keep-alive ``POST`` of
a JSON body with a ``Content-Length``. ``mly._native.http1.plain_post`` recognises exactly
that shape (a strict subset of what llhttp accepts), and this mixin answers such requests:

- only between requests (nothing parsed and not answered, nothing half read), so llhttp is
  always at a message boundary when it takes over again;
- an answer that is ready (memo or memory-tier hits, ``EvalFastPath.answer_now``) is written
  at once, and the next plain request of the same read is taken the same way;
- any other plain request (a miss, a store lookup, an error) is answered by a task
  (``EvalFastPath.answer_post``); while it runs, what the client sends next waits unparsed
  (reading pauses past ``BACKLOG_LIMIT`` bytes) and is fed on after the answer is written,
  so answers keep their order;
- anything that is not plain, and everything after it in that read, goes to the full parser.

``MLY_HTTP1_PLAIN=off`` turns this off (the A/B switch; ``PLAIN_PATH`` is read per connection).
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import TYPE_CHECKING, Any

from mly._native.http1 import plain_post
from mly.http.fast import EvalFastPath, eval_model_id

if TYPE_CHECKING:
    from mly.http.h1limits import H1Limits
    from mly.service.body_hits import BodyLookup

__all__ = ["BACKLOG_LIMIT", "PLAIN_PATH", "PLAIN_PATH_ENV", "PlainRequests"]

PLAIN_PATH_ENV = "MLY_HTTP1_PLAIN"
PLAIN_PATH = os.environ.get(PLAIN_PATH_ENV, "on") != "off"
BACKLOG_LIMIT = 65536
"""Bytes a connection may send while its plain request is answered before reading pauses."""


class PlainRequests:
    """Mixed into ``MlyHttpProtocol`` (before uvicorn's protocol, whose ``shutdown`` it extends)."""

    front: EvalFastPath | None
    limits: H1Limits
    flow: Any  # a GatedFlow
    transport: Any
    loop: asyncio.AbstractEventLoop
    cycle: Any
    pipeline: Any
    tasks: set[asyncio.Task[None]]
    server_state: Any
    head_open: bool
    deferred: Any
    read_since: float
    timeout_keep_alive: Any
    timeout_keep_alive_handler: Any
    timeout_keep_alive_task: Any
    framed: Any
    feed: Any

    def plain_init(self) -> None:
        self.plain = self.front is not None and PLAIN_PATH
        self.backlog: bytearray | None = None
        """What the client sent while a plain request's answer is on its way (``answer_later``);
        ``None`` when none is."""
        self.plain_stop = False  # the server began stopping while ``answer_later`` ran
        self.plain_answered = False
        """The first request is past (no cycle was made for it): ``data_received`` settles on it."""

    def between_requests(self) -> bool:
        cycle = self.cycle
        return (not self.head_open and self.deferred is None and not self.pipeline
                and (cycle is None or (cycle.response_complete and not cycle.more_body))
                and not self.flow.write_paused and not self.transport.is_closing())

    def hold(self, data: bytes) -> None:
        """Keep ``data`` (unparsed) until ``answer_later``'s answer is written."""
        assert self.backlog is not None
        self.backlog += data
        if len(self.backlog) > BACKLOG_LIMIT:
            self.flow.pause_reading()

    def answer_plain(self, data: bytes) -> int:
        """Answer (or start answering) the plain requests ``data`` begins with; the bytes taken."""
        front = self.front
        assert front is not None
        pos = 0
        answers: list[bytes] = []
        max_head = self.limits.max_head_bytes
        while True:
            plain = plain_post(data, pos, max_head, front.front_body_limit)
            if plain is None:
                break
            path, body_start, end = plain
            if not eval_model_id(path):
                break
            body = data[body_start:end]
            answer, lookup = front.answer_now(path, body)
            if answer is None:
                self.backlog = bytearray(data[end:])
                pos = len(data)
                if lookup is not None or not front.answer_from_stores(
                        path, body, functools.partial(self.stores_answered, path, body)):
                    self.answer_by_task(path, body, lookup)
                break
            answers.append(self.framed(200, answer))
            self.server_state.total_requests += 1
            pos = end
        if pos:
            self.read_since = 0.0  # the accept's read deadline ends with the first request, as in ``on_message_complete``
            self.plain_answered = True
        if answers:
            self.transport.write(answers[0] if len(answers) == 1 else b"".join(answers))
            if self.backlog is None:  # else ``answered`` arms it
                self.idle_again()
        return pos

    def idle_again(self) -> None:
        """The keep-alive timer, as ``on_response_complete`` arms it. A request in what follows
        stops it as it begins (``on_message_begin``); bytes that begin none (a stray CRLF) do not."""
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def answer_by_task(self, path: str, body: bytes, lookup: BodyLookup | None, answer: bytes | None = None) -> None:
        task = self.loop.create_task(self.answer_later(path, body, lookup, answer))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def stores_answered(self, path: str, body: bytes, answer: bytes | None, lookup: BodyLookup | None) -> None:
        """``answer_from_stores``'s callback: the answer written now, or finished by a task (rows
        to evaluate, a lookup to repeat, a client that stopped reading)."""
        if answer is None or (self.flow.write_paused and not self.transport.is_closing()):
            self.answer_by_task(path, body, lookup, answer)
            return
        self.answered(200, answer)

    async def answer_later(self, path: str, body: bytes, lookup: BodyLookup | None,
                           answer: bytes | None = None) -> None:
        """The answer of a plain request that was not ready (``answer``: ready, but the client
        stopped reading), then what the client sent meanwhile."""
        assert self.front is not None
        status = 200
        try:
            if answer is None:
                status, answer = await self.front.answer_post(path, body, lookup)
            if self.flow.write_paused and not self.transport.is_closing():
                await self.flow.drain()  # the client stopped reading: wait, as uvicorn's send does
        except BaseException:
            self.backlog = None
            raise
        self.answered(status, answer)

    def answered(self, status: int, answer: bytes) -> None:
        """Write a plain request's answer, then go on with what the client sent meanwhile."""
        try:
            if self.transport.is_closing():
                return  # the client is gone
            stop = self.plain_stop
            self.transport.write(self.framed(status, answer, close=stop))
            self.server_state.total_requests += 1
            if stop:
                self.transport.close()
                return
        finally:
            backlog, self.backlog = self.backlog, None
        self.flow.resume_reading()
        if backlog:
            self.feed(bytes(backlog))  # stops the timer first: armed below if nothing began
        if self.timeout_keep_alive_task is None and self.backlog is None and self.between_requests():
            self.idle_again()

    def shutdown(self) -> None:
        """uvicorn's graceful stop: a plain request being answered is answered, then the connection closes."""
        if self.backlog is not None:
            self.plain_stop = True
            return
        super().shutdown()  # type: ignore[misc]
