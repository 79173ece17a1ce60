"""The eval endpoint as a plain ASGI handler in front of Starlette.

Eval is the one hot route. Going through Starlette's middleware stack, router,
``Request`` and ``Response`` objects cost about as much as everything mly does
for a cached answer, so eval requests are answered here directly and every
other path (meta, health, config, 404/405) falls through to the Starlette app.
Errors have the same JSON shape as every other route (``responses.error_body``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from mly.cache.read_now import RETRY
from mly.common.request import parse_body, parse_query
from mly.common.wire import STATUS_OK
from mly.errors import DeadlineExceededError, MlyError, PayloadTooLargeError, RequestError
from mly.http.responses import error_body
from mly.http.stream import is_ndjson, stream_eval
from mly.logs.access import AccessLog
from mly.service.body_hits import BodyLookup, keys_for_stores, lookup_body, lookup_body_in_stores, stored_lookup
from mly.service.body_rows import evaluate_rows, read_rows
from mly.service.generation import Generation
from mly.service.memo import memo_key
from mly.service.model_service import ModelService
from mly.service.registry import ModelRegistry

__all__ = ["EvalFastPath", "envelope", "eval_model_id"]

Answered = Callable[[bytes | None, BodyLookup | None], None]
"""``answer_from_stores``'s callback: an answer, or what to go on from without one."""
Tiers = tuple[int, ...]
"""Rows answered by the memo, the memory tier, L1 and L2, in that order (the access log's ``tiers``)."""
NO_TIERS: Tiers = (0, 0, 0, 0)

log = logging.getLogger("mly.http")

_PREFIX = "/v1/api/model/"
_SUFFIX = "/eval"
_METHODS = frozenset({"GET", "POST", "PUT"})  # PUT is POST, as in Go
_JSON_HEADERS = [(b"content-type", b"application/json")]
#: The connection holds at most this much of a body before it hands the request to the
#: ASGI path; below uvicorn's flow-control mark, so reading never pauses while it waits.
FRONT_MAX_BODY = 32768


@functools.lru_cache(maxsize=64)
def _envelope_head(dict_hash: int) -> bytes:
    """Everything of an answer before ``serviceTimeMcs``'s value; ``dictHash`` is left out when 0, as in Go."""
    if dict_hash:
        return b'{"status":"%s","dictHash":%d,"serviceTimeMcs":' % (STATUS_OK.encode(), dict_hash)
    return b'{"status":"%s","serviceTimeMcs":' % STATUS_OK.encode()


def envelope(dict_hash: int, started_ns: int, data: bytes | memoryview) -> bytes:
    """A success answer around already-serialised ``data``, timed to now."""
    elapsed = b"%d" % ((time.perf_counter_ns() - started_ns) // 1000)
    return b"".join((_envelope_head(dict_hash), elapsed, b',"data":', data, b"}"))


class MethodNotAllowedError(MlyError):
    status = 405


class ClientDisconnectedError(MlyError):
    """The client went away mid-request (Go's ``canceled``)."""


def eval_model_id(path: str) -> str:
    """The model id of an eval path (``/v1/api/model/{id}/eval``), or ``""`` for any other path.

    The one test of "is this eval": the ASGI fast path, the connection's answers and the
    memo all use it, so a path one of them would leave to the app is left to it by all."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return ""
    model_id = path[len(_PREFIX) : -len(_SUFFIX)]
    return "" if "/" in model_id else model_id


def _outcome(status: int, error: Exception | None) -> str:
    """Go's ``{id}Perf`` value for a request that did not succeed."""
    if isinstance(error, DeadlineExceededError):
        return "deadlineExceeded"
    if isinstance(error, ClientDisconnectedError):
        return "canceled"
    if status == 429:
        return "overloaded"
    return "invalid" if status < 500 else "error"


def _record(service: ModelService | None, status: int, error: Exception | None, started: int) -> int:
    """Count an answered eval request in the model's ``{id}Perf``; returns its latency in µs.
    A 405 is not counted: the request was never one of the model's evaluations."""
    elapsed_us = (time.perf_counter_ns() - started) // 1000
    if service is not None and status != 405:
        service.metrics.perf.record(elapsed_us, "eval" if status == 200 else _outcome(status, error))
    return elapsed_us


class EvalFastPath:
    def __init__(self, app: Any, registry: ModelRegistry, *, buffer_size: int, max_batch_size: int,
                 access_log: AccessLog | None = None) -> None:
        self.app: ASGIApp = app
        self.state = app.state  # the wrapped Starlette app's state (``state.registry``)
        self.registry = registry
        self.buffer_size = buffer_size
        self.max_batch_size = max_batch_size
        self.access_log = access_log
        """``None`` when off: then the hot path's whole cost is one ``is not None``."""
        self.front_body_limit = 0 if access_log is not None else min(FRONT_MAX_BODY, buffer_size)
        """POST bodies up to this size are answered by the connection itself (``answer_now``,
        ``answer_post``), without an ASGI task; 0 turns that off (the access log wants every
        request's ASGI scope). Larger bodies take the ASGI path, which refuses what is too large."""

    def answer_now(self, path: str, body: bytes | bytearray) -> tuple[bytes | None, BodyLookup | None]:
        """A POST answer from the memo or from the memory tier alone, for ``MlyHttpProtocol`` to
        write without starting an ASGI task; else ``None`` and what was looked up, for
        ``answer_post`` to go on from.

        ``None`` (not eval, unknown model, a body that is not plain, a miss) sends the request
        down the normal path, which looks in the memo again and counts its miss.
        """
        service = self.registry.services.get(eval_model_id(path))
        generation = service.generation if service is not None else None
        if generation is None:
            return None, None
        assert service is not None
        started = time.perf_counter_ns()
        memo = generation.memo
        key = ""
        if memo is not None and len(body) <= memo.max_body_bytes and memo.uses(body, count=False):
            key = body.decode("latin-1")  # memo_key("POST", body), inlined
            hit = memo.get(key, count_miss=False)
            if hit is not None:
                service.metrics.request_started(started)
                service.outcomes.record_memo(hit[0])
                answer = envelope(generation.dict_hash, started, hit[1])
                service.metrics.perf.record((time.perf_counter_ns() - started) // 1000, "eval")
                return answer, None
        if service.stream_log is not None:  # every answer must reach the log: the common path
            return None, None
        lookup = lookup_body(generation, service.cache, body, self.max_batch_size)
        if lookup is None or not lookup.all_hit:
            return None, lookup
        return self._answer_hits(service, generation, lookup, body, key, started, started), None

    def answer_from_stores(self, path: str, body: bytes | bytearray, answered: Answered) -> bool:
        """For a model whose only cache tier is one store: its lookup started, answered by callback
        (``TieredCache.read_now``): ``answered(answer, None)`` when every row hit (counted as
        ``answer_now`` counts its hits), else ``answered(None, lookup)`` for ``answer_post`` to go
        on from (``lookup`` ``None``: the rows are looked up again there). ``False``: nothing was
        started; ``answer_post`` does it all."""
        service = self.registry.services.get(eval_model_id(path))
        generation = service.generation if service is not None else None
        if generation is None:
            return False
        assert service is not None
        if service.stream_log is not None:  # every answer must reach the log: the common path
            return False
        cache = service.cache
        keyed = keys_for_stores(generation, cache, body, self.max_batch_size)
        if keyed is None:
            return False
        assert cache is not None
        schema, keys, batch = keyed
        started = time.perf_counter_ns()

        def read(rows: Any, hits: int) -> None:
            if rows is RETRY:
                answered(None, None)
                return
            lookup = stored_lookup(schema, keys, batch, rows, (0, hits, 0))
            if not lookup.all_hit:
                answered(None, lookup)
                return
            try:
                # Taken now, not at ``started``: requests answered meanwhile took their idle time after it.
                answer = self._answer_hits(service, generation, lookup, body, None, started, time.perf_counter_ns())
            except Exception:  # in a future's callback, an exception would be logged and the request lost
                log.exception("answering %s from its store failed; answered the common way", path)
                answered(None, None)
                return
            answered(answer, None)

        return cache.read_now(keys, generation.dict_hash, read)

    def _answer_hits(self, service: ModelService, generation: Generation, lookup: BodyLookup,
                     body: bytes | bytearray, memo_key: str | None, started: int, begun: int) -> bytes:
        """The answer the connection gives a body every row of which a cache tier held, counted as
        the normal path would count it. ``memo_key``: what ``answer_now``'s look in the memo gave
        (``""``: the body does not use the memo), ``None`` when not looked yet. ``begun``: the
        request's start for the idle-time histogram."""
        service.metrics.request_started(begun)
        memo = generation.memo
        key = ""
        if memo is not None and len(body) <= memo.max_body_bytes:
            if memo_key is None:
                memo_key = body.decode("latin-1") if memo.uses(body, count=False) else ""  # memo_key("POST", body)
            if memo_key:
                key = memo_key
                memo.missed()  # the first look did not count it, and the normal path does not run
            else:
                memo.skipped += 1  # counted where the normal path would have counted it
        answer = self._all_hit(service, generation, lookup, key, started, started)
        service.metrics.perf.record((time.perf_counter_ns() - started) // 1000, "eval")
        return answer

    @staticmethod
    def _all_hit(service: ModelService, generation: Generation, lookup: BodyLookup, memo_key: str,
                 started: int, read_started: int) -> bytes:
        """The answer of a body whose every row the memory tier holds: what the common path
        answers (and memoises) for it, byte for byte, without parsing it."""
        data = lookup.found
        assert type(data) is bytes
        rows = len(lookup.keys)
        service.metrics.http_overhead.record((time.perf_counter_ns() - read_started) // 1000)
        service.outcomes.record(rows, rows)
        if memo_key and generation.memo is not None:
            generation.memo.put(memo_key, rows, data)
        return envelope(generation.dict_hash, started, data)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, self._lifespan_send(send) if scope["type"] == "lifespan" else send)
            return
        path: str = scope["path"]
        model_id = eval_model_id(path)
        if not model_id:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter_ns()
        service = self.registry.services.get(model_id)
        if service is not None:
            service.metrics.request_started(started)
        if scope["method"] == "PUT" and service is not None and is_ndjson(scope["headers"]):
            await stream_eval(self.registry, model_id, scope, receive, send)  # NDJSON in, NDJSON out
            return
        status, body, rows, cached_rows, tiers, error = await self._answer(
            service, model_id, path, scope["method"], started, scope, receive, None
        )
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if status == 405:
            headers.append((b"allow", b"GET, POST, PUT"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        elapsed_us = _record(service, status, error, started)
        if self.access_log is not None:
            self._log_access(scope, model_id, service, status, rows, cached_rows, tiers, elapsed_us, error)

    async def answer_post(self, path: str, body: bytes | bytearray,
                          lookup: BodyLookup | None = None) -> tuple[int, bytes]:
        """The status and JSON body for a POST to ``path`` (an eval path, see ``eval_model_id``),
        for ``MlyHttpProtocol`` to write itself: the same answer, metrics and errors as the ASGI
        path, without it. ``lookup``: what ``answer_now`` read for this body."""
        model_id = eval_model_id(path)
        started = time.perf_counter_ns()
        service = self.registry.services.get(model_id)
        if service is not None:
            service.metrics.request_started(started)
        status, answer, _rows, _cached, _tiers, error = await self._answer(
            service, model_id, path, "POST", started, None, None, body, lookup)
        _record(service, status, error, started)
        return status, answer

    async def _answer(
        self, service: ModelService | None, model_id: str, path: str, method: str, started: int,
        scope: Scope | None, receive: Receive | None, raw: bytes | bytearray | None,
        lookup: BodyLookup | None = None,
    ) -> tuple[int, bytes, int, int, Tiers, Exception | None]:
        """Status, body, rows, cached rows, the rows each source answered (``Tiers``) and the
        error (if any) of one eval request.

        ``raw`` is the body when the caller has read it already; otherwise it is read
        from ``receive`` (or taken from the query string of a GET).
        """
        error: Exception | None = None
        rows = cached_rows = 0
        tiers = NO_TIERS
        try:
            if method not in _METHODS:
                raise MethodNotAllowedError(f"method {method} not allowed on {path}: use GET, POST, PUT")
            if service is None:
                self.registry.get(model_id)  # raises the 404 that names the served models
            assert service is not None
            body, rows, cached_rows, tiers = await self._evaluate(service, method, started, scope, receive, raw,
                                                                  lookup)
            status = 200
        except MlyError as exc:
            if exc.status >= 500:
                log.warning("%s %s -> %d: %s", method, path, exc.status, exc)
            status, body, error = exc.status, error_body(str(exc)), exc
        except Exception as exc:
            log.exception("%s %s failed", method, path)
            status, body, error = 500, error_body(f"internal error: {type(exc).__name__}"), exc
        return status, body, rows, cached_rows, tiers, error

    def _log_access(self, scope: Scope, model_id: str, service: ModelService | None, status: int,
                    rows: int, cached_rows: int, tiers: Tiers, elapsed_us: int, error: Exception | None) -> None:
        assert self.access_log is not None
        self.access_log.write(
            method=scope["method"], path=scope["path"], model=model_id, status=status,
            rows=rows, cached_rows=cached_rows, tiers=tiers,
            cached=service is not None and service.cache is not None,
            latency_us=elapsed_us, client=scope.get("client"), error=error,
        )

    def _lifespan_send(self, send: Send) -> Send:
        """A start-up failure mly explains itself (a self-test) is logged as that one line, not a traceback."""

        async def lifespan_send(message: Any) -> None:
            reason = getattr(self.state, "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and reason:
                message = {**message, "message": f"cannot start: {reason}"}
            await send(message)

        return lifespan_send

    async def _evaluate(
        self, service: ModelService, method: str, started: int,
        scope: Scope | None, receive: Receive | None, raw: bytes | bytearray | None,
        lookup: BodyLookup | None = None,
    ) -> tuple[bytes, int, int, Tiers]:
        """The answer's bytes, its rows, how many of them came from a cache (or the memo), and
        from which (``Tiers``)."""
        overhead = service.metrics.http_overhead
        read_started = time.perf_counter_ns()
        try:
            if raw is not None:
                pass  # read by the connection (``answer_post``)
            elif method == "GET":
                assert scope is not None
                raw = scope.get("query_string", b"")
            else:
                assert scope is not None and receive is not None
                try:
                    raw = await self._read_body(scope, receive)
                except MlyError as exc:
                    overhead.record_error((time.perf_counter_ns() - read_started) // 1000, "readError", str(exc))
                    raise
            generation = service.current
            memo = generation.memo
            key = ""
            if memo is not None and len(raw) <= memo.max_body_bytes and memo.uses(raw):
                key = memo_key(method, raw)
                hit = memo.get(key)
                if hit is not None:
                    service.outcomes.record_memo(hit[0])
                    return envelope(generation.dict_hash, started, hit[1]), hit[0], hit[0], (hit[0], 0, 0, 0)
            if lookup is None and method != "GET" and service.stream_log is None:
                lookup = lookup_body(generation, service.cache, raw, self.max_batch_size)
                if lookup is None and service.cache is not None and service.cache.memory is None:
                    lookup = await lookup_body_in_stores(generation, service.cache, raw, self.max_batch_size)
            if lookup is not None and lookup.all_hit:
                rows = len(lookup.keys)
                answer = self._all_hit(service, generation, lookup, key, started, read_started)
                return answer, rows, rows, ((0, *lookup.tiers) if lookup.complete else (0, rows, 0, 0))
            read = read_rows(service, raw, lookup, self.max_batch_size) if lookup is not None else None
            if read is not None:
                pass  # a batch that partly hit: only the rows the cache lacked were read (``body_rows``)
            elif method == "GET":
                query = raw.decode("latin-1")
                request = parse_query(parse_qsl(query, keep_blank_values=True), generation.interface.dtypes)
            else:
                request = parse_body(raw, max_batch_size=self.max_batch_size)
        except RequestError as exc:
            overhead.record_error((time.perf_counter_ns() - read_started) // 1000, "unmarshalError", str(exc))
            raise
        overhead.record((time.perf_counter_ns() - read_started) // 1000)
        if read is not None:
            done = await evaluate_rows(service, read)
            if key and service.generation is generation and done.dict_hash == generation.dict_hash:
                memo.put(key, done.rows, done.data)  # type: ignore[union-attr]
            service.outcomes.record(done.rows, done.cached_rows)
            return envelope(done.dict_hash, started, done.data), done.rows, done.cached_rows, (0, *done.tiers)
        result = await service.evaluate(request, lookup)
        data = orjson.dumps(result.rows if result.batch else result.rows[0], option=orjson.OPT_SERIALIZE_NUMPY)
        if key and service.generation is generation and result.dict_hash == generation.dict_hash:
            # Still the generation that owns the memo: the answer is this model's, not a newer one's.
            memo.put(key, len(result.rows), data)  # type: ignore[union-attr]
        service.outcomes.record(len(result.rows), result.cached_rows)
        return envelope(result.dict_hash, started, data), len(result.rows), result.cached_rows, (0, *result.tiers)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """At most ``buffer_size`` bytes; larger is a 413 before it is all buffered."""
        limit = self.buffer_size
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise PayloadTooLargeError(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnectedError("client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
