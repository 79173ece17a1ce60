"""A datastore whose only tier is Redis (no memory tier): bodies answered from the store's bytes."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from e2e.test_body_rows import bodies, common_path, untimed
from hypothesis import given, settings
from live_server import LiveServer
from raw_http import connect, post_request, read_response, split
from redis_server import RedisServer, decode_entry, encode_entry

from mly.http import plain as plain_module

EVAL = "/v1/api/model/t/eval"

ROWS = [{"sa": "a", "sl": "b", "i1": 10, "fl": 0.5}, {"sa": "b", "sl": "c", "i1": 20, "fl": 1.25},
        {"sa": "c", "sl": "a", "i1": 30, "fl": 2.0}, {"sa": "zz", "sl": "b", "i1": 99, "fl": 3.5}]


def store_only_config(model_dir: str, redis: RedisServer, namespace: str, **model: Any) -> dict[str, Any]:
    """Model ``t`` whose only cache tier is the Redis ``redis`` (500 ms timeouts), entries under ``namespace``."""
    timeout = {"Connection": 500, "Socket": 500, "Total": 500}
    return {
        "Models": [{"ID": "t", "URL": model_dir, "DataStore": "shared", "Inputs": [{"Name": "fl", "Precision": 2}],
                    **model}],
        "Connections": [{"ID": "l1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": redis.port,
                         "Timeout": timeout}],
        "Datastores": [{"ID": "shared", "Connection": "l1", "Namespace": namespace, "Dataset": "t",
                        "TimeToLiveMs": 60000}],
    }


@pytest.fixture(scope="module")
def store_only(model_dirs: dict[str, str], redis_servers: dict[str, RedisServer],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = store_only_config(model_dirs["keras"], redis_servers["l1"], "so")
    live = LiveServer(config, tmp_path_factory.mktemp("store-only")).start()
    yield live
    live.stop()


@pytest.fixture
def server(store_only: LiveServer, redis_servers: dict[str, RedisServer]) -> LiveServer:
    redis_servers["l1"].ensure_up()
    redis_servers["l1"].flush()
    settled(store_only)
    return store_only


def settled(server: LiveServer) -> None:
    """Wait until the store answers lookups again (breaker closed, lookup connection open) after a
    test that stopped it: lookups then take the connection's path, as the tests below expect."""
    from mly.cache.breaker import BreakerState

    tier = server.registry.caches["shared"].l1
    assert tier is not None
    deadline = time.monotonic() + 10
    with server.client() as client:
        def ready() -> bool:  # read only: this is not the server's thread
            protocol = tier.store._lookups._protocol  # type: ignore[attr-defined]
            return protocol is not None and protocol.lost is None and not protocol.waiting

        while tier.breaker.state is not BreakerState.CLOSED or not ready():
            assert time.monotonic() < deadline, "the store never came back"
            client.post("/v1/api/model/t/eval", content=batch(ROWS[:1]))
            time.sleep(0.05)


def batch(rows: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"batch_size": len(rows), **{name: [row[name] for row in rows] for name in rows[0]}})


def post(server: LiveServer, body: bytes) -> tuple[bytes, dict[str, Any]]:
    with server.client() as client:
        response = client.post("/v1/api/model/t/eval", content=body)
    assert response.status_code == 200, response.text
    return response.content, response.json()


def evaluated(server: LiveServer) -> int:
    return server.registry.get("t").rows_evaluated


def flush(server: LiveServer) -> None:
    cache = server.registry.caches["shared"]
    assert asyncio.run_coroutine_threadsafe(cache.flush(5.0), server.loop).result(10)


def row_json(answer: dict[str, Any]) -> list[bytes]:
    return [orjson.dumps(row) for row in answer["data"]]


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts bodies the common path parses (a spy around the real ``parse_body``)."""
    import mly.http.fast as fast

    calls: list[int] = []
    real = fast.parse_body

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast, "parse_body", counting)
    return calls


def test_an_all_hit_batch_is_the_stored_rows_joined(
    server: LiveServer, redis_servers: dict[str, RedisServer], parsed: list[int]
) -> None:
    assert server.registry.caches["shared"].memory is None
    _, first = post(server, batch(ROWS))
    flush(server)
    with redis_servers["l1"].client() as r:
        assert len(r.keys("so:t:*")) == len(ROWS)
    before, hits = evaluated(server), server.registry.caches["shared"].counters.hits_l1
    reordered = [ROWS[2], ROWS[0], ROWS[3], ROWS[1]]  # a body never sent before, every row stored
    parsed.clear()
    raw, again = post(server, batch(reordered))
    assert evaluated(server) == before  # no TensorFlow call
    assert parsed == []  # keys read from the body's bytes, rows joined: never parsed
    assert server.registry.caches["shared"].counters.hits_l1 == hits + len(ROWS)
    assert row_json(again) == [row_json(first)[i] for i in (2, 0, 3, 1)]
    assert again["dictHash"] == first["dictHash"]
    # The data is the stored JSON bytes joined, exactly as Redis holds them.
    with redis_servers["l1"].client() as r:
        generation = server.registry.get("t").current
        assert generation.key_schema is not None
        stored = [r.get(f"so:t:{generation.key_schema.key(row)}")[17:] for row in reordered]
    assert b'"data":[' + b",".join(stored) + b"]" in raw


def test_a_partly_stored_batch_evaluates_only_its_missing_rows(server: LiveServer, parsed: list[int]) -> None:
    _, first = post(server, batch(ROWS[:2]))
    flush(server)
    before = evaluated(server)
    parsed.clear()
    _, mixed = post(server, batch([ROWS[1], ROWS[2], ROWS[0]]))
    assert evaluated(server) == before + 1  # ROWS[2] only
    assert parsed == []  # only the missing row was read from the body
    _, alone = post(server, batch([ROWS[2]]))
    assert row_json(mixed) == [row_json(first)[1], row_json(alone)[0], row_json(first)[0]]


def test_an_entry_of_another_dictionary_is_evaluated_not_served(
    server: LiveServer, redis_servers: dict[str, RedisServer]
) -> None:
    _, first = post(server, batch(ROWS[:1]))
    flush(server)
    generation = server.registry.get("t").current
    assert generation.key_schema is not None
    key = f"so:t:{generation.key_schema.key(ROWS[0])}"
    with redis_servers["l1"].client() as r:
        entry = decode_entry(r.get(key))
        assert entry is not None and entry[1] == first["dictHash"]
        r.set(key, encode_entry({"score": 999}, first["dictHash"] + 1, int(time.time() * 1000) + 60_000), px=60_000)
    before, stale = evaluated(server), server.registry.caches["shared"].counters.stale
    _, again = post(server, batch(ROWS[:1]))
    assert evaluated(server) == before + 1
    assert server.registry.caches["shared"].counters.stale == stale + 1
    assert row_json(again) == row_json(first)


def test_any_body_is_answered_as_the_common_path_answers_it(
    server: LiveServer, redis_servers: dict[str, RedisServer]
) -> None:
    """Differential, as ``test_body_rows``'s on a memory tier: the answer from the store's bytes
    (``lookup_body_in_stores``, then the rows Redis lacked) is the common path's, each from the
    same store: empty but for another body's rows."""
    names = tuple(server.registry.get("t").current.interface.dtypes)
    with server.client() as client:

        @settings(max_examples=200, deadline=None, database=None)
        @given(bodies(names), bodies(names))
        def check(raw: bytes, seed: bytes) -> None:
            answers = []
            for send in (raw, common_path(raw)):
                redis_servers["l1"].flush()
                client.post("/v1/api/model/t/eval", content=common_path(seed))
                flush(server)
                answers.append(client.post("/v1/api/model/t/eval", content=send))
                flush(server)
            native, common = answers
            assert (native.status_code, untimed(native.content)) == (common.status_code, untimed(common.content)), raw

        check()


# ---- answered by the connection through ``TieredCache.read_now`` (no task, no coroutine)


@pytest.fixture
def get_many_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts ``TieredCache.get_many`` calls (a spy around the real one): the common lookup."""
    from mly.cache.tiered import TieredCache

    calls: list[int] = []
    real = TieredCache.get_many

    async def counting(self: TieredCache, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(TieredCache, "get_many", counting)
    return calls


def stored(server: LiveServer, rows: list[dict[str, Any]]) -> dict[str, Any]:
    _, answer = post(server, batch(rows))
    flush(server)
    return answer


def test_a_plain_post_whose_rows_are_stored_is_answered_without_the_common_lookup(
    server: LiveServer, get_many_calls: list[int], asgi_cycles: list[str]
) -> None:
    first = stored(server, ROWS)
    before, hits = evaluated(server), server.registry.caches["shared"].counters.hits_l1
    get_many_calls.clear()
    asgi_cycles.clear()
    with connect(server.url) as sock:
        sock.sendall(post_request(EVAL, batch(ROWS[::-1])) + post_request(EVAL, orjson.dumps(ROWS[1])))
        pending = bytearray()
        answers = [split(read_response(sock, pending)) for _ in range(2)]
    assert [a[0] for a in answers] == [200, 200]
    assert row_json(answers[0][2]) == row_json(first)[::-1]
    assert orjson.dumps(answers[1][2]["data"]) == row_json(first)[1]
    assert get_many_calls == [] and asgi_cycles == []
    assert evaluated(server) == before
    assert server.registry.caches["shared"].counters.hits_l1 == hits + len(ROWS) + 1


def pipelined(server: LiveServer, requests: list[bytes]) -> list[bytes]:
    with connect(server.url) as sock:
        sock.sendall(b"".join(requests))
        pending = bytearray()
        return [untimed(_DATE.sub(b"", read_response(sock, pending))) for _ in requests]


_DATE = re.compile(rb"(date|content-length): [^\r]*\r\n", re.IGNORECASE)


def test_a_pipelined_mix_is_answered_in_order_and_as_with_the_path_off(
    server: LiveServer, redis_servers: dict[str, RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored, partly stored and unstored batches, single rows, a GET, a bad body and another
    model, pipelined in one write: the same bytes with the connection's path on and off."""
    stored(server, ROWS[:2])
    get = b"GET /v1/api/model/t/eval?sa=a&sl=b&i1=10&fl=0.5 HTTP/1.1\r\nHost: t\r\n\r\n"
    requests = [
        post_request(EVAL, batch(ROWS[:2])), post_request(EVAL, batch(ROWS)), post_request(EVAL, orjson.dumps(ROWS[0])),
        get, post_request(EVAL, b'{"sa": "a",'), post_request(EVAL, batch([ROWS[3], ROWS[2]])),
        post_request("/v1/api/model/nope/eval", orjson.dumps(ROWS[0])), post_request(EVAL, batch(ROWS[1:3])),
    ] * 3
    seen = []
    for plain in (True, False, True):
        monkeypatch.setattr(plain_module, "PLAIN_PATH", plain)
        redis_servers["l1"].flush()
        stored(server, ROWS[:2])
        seen.append(pipelined(server, requests))
    assert seen[0] == seen[1] == seen[2]
    assert [a.split(b" ", 2)[1] for a in seen[0][:8]] == [b"200", b"200", b"200", b"200", b"400", b"200", b"404", b"200"]


def test_a_paused_store_answers_by_evaluating_after_its_timeout(
    server: LiveServer, redis_servers: dict[str, RedisServer]
) -> None:
    """Redis stopped (SIGSTOP) with the lookup connection open: the plain POST's lookup times
    out (500 ms here), the rows are evaluated, and a request pipelined behind it comes after."""
    first = stored(server, ROWS)
    cache = server.registry.caches["shared"]
    timeouts = cache.counters.timeouts
    redis_servers["l1"].pause()
    try:
        with connect(server.url) as sock:
            started = time.monotonic()
            sock.sendall(post_request(EVAL, batch(ROWS)) + post_request(EVAL, orjson.dumps(ROWS[3])))
            pending = bytearray()
            answers = [split(read_response(sock, pending)) for _ in range(2)]
            waited = time.monotonic() - started
    finally:
        redis_servers["l1"].resume()
    assert [a[0] for a in answers] == [200, 200]
    assert row_json(answers[0][2]) == row_json(first)
    assert orjson.dumps(answers[1][2]["data"]) == row_json(first)[3]
    assert 0.45 <= waited < 5
    assert cache.counters.timeouts >= timeouts + 1


def test_an_error_while_answering_from_the_store_is_answered_the_common_way(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault that cannot be caused for real (a defect in building the answer) is simulated by a
    test double: the first ``_answer_hits`` raises. The request must still be answered, by the
    common path, not dropped inside the reply's callback."""
    from mly.http.fast import EvalFastPath

    first = stored(server, ROWS)
    real = EvalFastPath._answer_hits
    calls: list[int] = []

    def failing_once(self: EvalFastPath, *args: Any) -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated defect")
        return real(self, *args)

    monkeypatch.setattr(EvalFastPath, "_answer_hits", failing_once)
    with connect(server.url) as sock:
        sock.settimeout(10)
        sock.sendall(post_request(EVAL, batch(ROWS)) + post_request(EVAL, batch(ROWS[:2])))
        pending = bytearray()
        answers = [split(read_response(sock, pending)) for _ in range(2)]
    assert [a[0] for a in answers] == [200, 200]
    assert row_json(answers[0][2]) == row_json(first) and row_json(answers[1][2]) == row_json(first)[:2]
    assert len(calls) == 2  # the second request came by the store's callback again


@pytest.fixture(scope="module")
def memo_store_only(model_dirs: dict[str, str], redis_servers: dict[str, RedisServer],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The store-only model with a response memo: its counters must not depend on the path."""
    config = store_only_config(model_dirs["keras"], redis_servers["l1"], "som", ResponseMemo={"SizeMb": 1})
    live = LiveServer(config, tmp_path_factory.mktemp("store-only-memo")).start()
    yield live
    live.stop()


def test_a_stored_body_counts_its_memo_miss_as_with_the_path_off(
    memo_store_only: LiveServer, redis_servers: dict[str, RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body whose rows are all stored, sent twice: a memo miss answered from the store, then
    a memo hit. ``responseMemo`` (and the hit rate the memo decides on) counts the same either way."""
    server = memo_store_only
    redis_servers["l1"].ensure_up()
    stored(server, ROWS)
    memo = server.registry.get("t").current.memo
    assert memo is not None
    seen = {}
    for plain, rows in ((False, ROWS[::-1]), (True, [ROWS[1], ROWS[0], ROWS[3], ROWS[2]])):
        monkeypatch.setattr(plain_module, "PLAIN_PATH", plain)
        before = memo.stats()
        answers = pipelined(server, [post_request(EVAL, batch(rows))] * 2)
        assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"200"]
        after = memo.stats()
        seen[plain] = {k: after[k] - before[k] for k in ("hits", "misses", "stored", "skipped")}
    assert seen[True] == seen[False] == {"hits": 1, "misses": 1, "stored": 1, "skipped": 0}


def test_the_idle_time_runs_between_requests_in_the_order_they_began(
    memo_store_only: LiveServer, redis_servers: dict[str, RedisServer]
) -> None:
    """A stored body waits for Redis (paused, well within the lookup's timeout) while a memo hit
    on another connection is answered: the model's idle time (``mly_model_idletime``) is taken at
    the later request last, never turned back to when the earlier one began (a negative idle time)."""
    server = memo_store_only
    redis_servers["l1"].ensure_up()
    stored(server, ROWS)
    memoised = batch(ROWS[:2])
    assert pipelined(server, [post_request(EVAL, memoised)] * 2)[1].split(b" ", 2)[1] == b"200"
    metrics = server.registry.get("t").metrics
    with connect(server.url) as waiting, connect(server.url) as other:
        other.sendall(post_request(EVAL, memoised))
        read_response(other, bytearray())  # both connections open and past their first request
        redis_servers["l1"].pause()
        try:
            waiting.sendall(post_request(EVAL, batch(ROWS[2:])))  # rows stored, body never sent
            time.sleep(0.1)
            before_hit = time.perf_counter_ns()
            other.sendall(post_request(EVAL, memoised))
            assert split(read_response(other, bytearray()))[0] == 200
        finally:
            redis_servers["l1"].resume()
        assert split(read_response(waiting, bytearray()))[0] == 200
    assert server.registry.caches["shared"].counters.timeouts == 0
    assert metrics.last_request_ns >= before_hit
