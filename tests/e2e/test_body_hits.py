"""Bodies whose every row the memory tier holds are answered from their bytes (keys read
natively, hits joined) by the connection itself: byte for byte the answer the common path
(parse, key, look up, serialise) gives for the same rows, with the same counters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from live_server import LiveServer

from mly.http.fast import EvalFastPath

EVAL = "/v1/api/model/sli/eval"
BATCH = {"batch_size": 3, "sa": ["a", "b", "zz"], "sl": ["b", "a", "c"], "i1": [10, 20, 999], "fl": [7.11, 7.12, 7.13]}
_TIME = re.compile(rb'"serviceTimeMcs":\d+')


@pytest.fixture
def common_path_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """One entry per POST the connection handed to ``answer_post`` (the common path) while the test ran."""
    calls: list[int] = []
    original = EvalFastPath.answer_post

    async def counting(self: EvalFastPath, *args: Any) -> tuple[int, bytes]:
        calls.append(1)
        return await original(self, *args)

    monkeypatch.setattr(EvalFastPath, "answer_post", counting)
    yield calls


def escaped(body: bytes) -> bytes:
    """The same JSON with one string written as an escape: the same rows, but not a body the
    native reader takes, so the common path answers it."""
    return body.replace(b'"a"', b'"\\u0061"', 1)


def untimed(answer: bytes) -> bytes:
    return _TIME.sub(b'"serviceTimeMcs":0', answer)


def stats(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/v1/api/model/sli/meta/stats").json())


@pytest.mark.parametrize("body", [BATCH, {k: v[0] for k, v in BATCH.items() if k != "batch_size"}],
                         ids=["batch", "row"])
def test_an_all_hit_body_is_answered_from_its_bytes_as_the_common_path_answers_it(
        server: LiveServer, common_path_calls: list[int], body: dict[str, Any]) -> None:
    raw = orjson.dumps(body)
    rows = body.get("batch_size", 1)
    with server.client() as client:
        first = client.post(EVAL, content=raw)  # evaluates (or finds) the rows, stores them
        assert first.status_code == 200
        before, calls = stats(client), len(common_path_calls)
        native = client.post(EVAL, content=raw)
        assert len(common_path_calls) == calls, "an all-hit plain body is answered by the connection"
        middle = stats(client)
        common = client.post(EVAL, content=escaped(raw))
        assert len(common_path_calls) == calls + 1
        after = stats(client)
    assert native.status_code == common.status_code == 200
    assert untimed(native.content) == untimed(common.content) == untimed(first.content)
    assert native.headers["content-type"] == common.headers["content-type"] == "application/json"
    for earlier, later in ((before, middle), (middle, after)):  # each answer: every row a memory hit
        assert later["cache"]["hitsMemory"] - earlier["cache"]["hitsMemory"] == rows
        assert later["cache"]["misses"] == earlier["cache"]["misses"]
        assert later["rows"]["cachedRows"] - earlier["rows"]["cachedRows"] == rows
        assert later["rows"]["requestsAllCached"] - earlier["rows"]["requestsAllCached"] == 1


def test_a_partly_cached_body_looks_each_row_up_once_and_evaluates_only_the_misses(
        server: LiveServer, common_path_calls: list[int]) -> None:
    seen = {"sa": "b", "sl": "b", "i1": 7, "fl": 8.01}
    batch = {"batch_size": 2, **{name: [seen[name], value] for name, value in
                                 {"sa": "a", "sl": "c", "i1": 10, "fl": 8.02}.items()}}
    with server.client() as client:
        assert client.post(EVAL, content=orjson.dumps(seen)).status_code == 200
        evaluated = server.registry.get("sli").rows_evaluated
        before = stats(client)
        answer = client.post(EVAL, content=orjson.dumps(batch))
        after = stats(client)
        again = client.post(EVAL, content=orjson.dumps(batch))
    assert answer.status_code == again.status_code == 200
    assert server.registry.get("sli").rows_evaluated == evaluated + 1
    assert after["cache"]["lookups"] - before["cache"]["lookups"] == 2
    assert after["cache"]["hitsMemory"] - before["cache"]["hitsMemory"] == 1
    assert untimed(answer.content) == untimed(again.content)


@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-limit", "past-the-limit"])
def test_a_broadcast_batch_at_and_past_the_max_batch_size_is_the_common_paths(server: LiveServer, extra: int) -> None:
    """A few bytes can ask for ``MaxBatchSize`` rows (every column one value): at the limit each
    row is the one cached row; one past it, the common path's error, not a cached answer."""
    limit = server.config.endpoint.max_batch_size
    raw = orjson.dumps({"batch_size": limit + extra, "sa": ["b"], "sl": ["zz"], "i1": [20], "fl": [7.14]})
    with server.client() as client:
        assert client.post(EVAL, content=escaped(orjson.dumps({"sa": "b", "sl": "zz", "i1": 20, "fl": 7.14}))
                           ).status_code == 200  # the row is cached
        native = client.post(EVAL, content=raw)
        common = client.post(EVAL, content=raw.replace(b'"b"', b'"\\u0062"'))
    assert native.status_code == common.status_code == (200 if extra == 0 else 413)
    assert untimed(native.content) == untimed(common.content)
