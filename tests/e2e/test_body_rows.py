"""A batch body some of whose rows are cached is answered from its bytes: its keys and the
rows it lacks are read natively, only those rows are encoded and evaluated, and the answer is
the rows' JSON joined. Byte for byte the answer, counters and errors of the common path (parse
every row, encode every row, serialise a list of fragments), which answers the same body when
one string is written as an escape (the native reader leaves such bodies alone)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import model_builders
import orjson
import pytest
from http2.h2client import RawH2
from hypothesis import given, settings
from hypothesis import strategies as st
from live_server import LiveServer
from reloading import point, wait_until

import mly.http.fast as fast
import mly.service.model_service as model_service
from mly.common.request import encode_columns, parse_body
from mly.errors import MlyError
from mly.http.responses import error_body

EVAL = "/v1/api/model/sli/eval"
_TIME = re.compile(rb'"serviceTimeMcs":\d+')
#: Rows of the ``sli`` model no other test sends (``fl`` on a grid of its own).
ROWS = [{"sa": sa, "sl": sl, "i1": i1, "fl": fl} for sa, sl, i1, fl in [
    ("a", "b", 10, 61.01), ("b", "zz", 20, 61.02), ("zz", "a", 999, 61.03), ("c", "c", 30, 61.04),
    ("a", "a", 40, 61.05), ("b", "b", 50, 61.06), ("c", "zz", 60, 61.07), ("zz", "zz", 70, 61.08),
]]


def body(rows: list[dict[str, Any]], **columns: list[Any]) -> bytes:
    """A batch of ``rows``; ``columns`` replace whole columns (one value broadcasts)."""
    return orjson.dumps({"batch_size": len(rows), **{name: [r[name] for r in rows] for name in rows[0]}, **columns})


def common(raw: bytes) -> bytes:
    """The same batch with its first ``sa`` value's first character written as an escape."""
    head = b'"sa":["'
    at = raw.index(head) + len(head)
    return raw[:at] + b"\\u%04x" % raw[at] + raw[at + 1:]


def untimed(answer: bytes) -> bytes:
    return _TIME.sub(b'"serviceTimeMcs":0', answer)


def stats(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/v1/api/model/sli/meta/stats").json())


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """One entry per body the server parsed into Python objects or encoded whole while the test ran."""
    calls: list[int] = []

    def counting(original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return original(*args, **kwargs)
        return call

    monkeypatch.setattr(fast, "parse_body", counting(fast.parse_body))
    monkeypatch.setattr(model_service, "encode_columns", counting(model_service.encode_columns))
    yield calls


def forget(server: LiveServer) -> None:
    """Drop every cached row of ``sli``, as a reload with the same dictionary does."""
    cache = server.registry.get("sli").cache
    assert cache is not None
    cache.forget_older_entries()


@pytest.mark.parametrize(("cached", "batch"), [
    ([0, 1, 2, 3, 4, 5], [0, 1, 6, 2, 3, 4, 7, 5]),  # misses among hits
    ([1, 2, 3], [0, 1, 2, 3, 4]),  # misses first and last
    ([0], [0, 5, 6, 7]),  # one hit
    ([2, 3], [6, 2, 6, 3]),  # a missing row twice: the second waits for the first
], ids=["middle", "ends", "one-hit", "repeated-miss"])
def test_a_partly_cached_batch_is_answered_from_its_bytes_as_the_common_path_answers_it(
        server: LiveServer, parsed: list[int], cached: list[int], batch: list[int]) -> None:
    hits, misses = [i for i in batch if i in cached], sorted({i for i in batch if i not in cached})
    raw = body([ROWS[i] for i in batch])
    service = server.registry.get("sli")
    answers, deltas, evaluated = [], [], []
    with server.client() as client:
        for send in (raw, common(raw)):  # the native path, then the common path on the same cache state
            forget(server)
            assert client.post(EVAL, content=common(body([ROWS[i] for i in cached]))).status_code == 200
            calls, rows_before, before = len(parsed), service.rows_evaluated, stats(client)
            answers.append(client.post(EVAL, content=send))
            deltas.append((stats(client), before))
            evaluated.append(service.rows_evaluated - rows_before)
            if send is raw:
                assert len(parsed) == calls, "a partly cached plain batch is neither parsed nor encoded whole"
    assert [a.status_code for a in answers] == [200, 200]
    assert untimed(answers[0].content) == untimed(answers[1].content)
    assert evaluated == [len(misses), len(misses)]  # only the rows the cache lacked, each once
    for after, before in deltas:
        assert after["cache"]["hitsMemory"] - before["cache"]["hitsMemory"] == len(hits)
        assert after["rows"]["cachedRows"] - before["rows"]["cachedRows"] == len(hits)
        assert after["rows"]["requestsPartlyCached"] - before["rows"]["requestsPartlyCached"] == 1
    with server.client() as client:  # what was evaluated was stored: the same body now hits whole
        assert untimed(client.post(EVAL, content=raw).content) == untimed(answers[0].content)


def test_a_broadcast_column_is_evaluated_as_the_common_path_evaluates_it(server: LiveServer) -> None:
    raw = body([ROWS[i] for i in (0, 1, 2)], fl=[61.09])
    with server.client() as client:
        answers = []
        for send in (raw, common(raw)):
            forget(server)
            assert client.post(EVAL, content=common(body([ROWS[1]], fl=[61.09]))).status_code == 200
            answers.append(client.post(EVAL, content=send))
    assert [a.status_code for a in answers] == [200, 200]
    assert untimed(answers[0].content) == untimed(answers[1].content)


def common_path_error(server: LiveServer, raw: bytes) -> tuple[int, bytes]:
    """The status and body the common path's own parsing and encoding give ``raw``."""
    generation = server.registry.get("sli").current
    try:
        encode_columns(parse_body(raw), generation.interface.dtypes, generation.encoders)
    except MlyError as exc:
        return exc.status, error_body(str(exc))
    raise AssertionError(f"the common path accepts {raw!r}")


@pytest.mark.parametrize(("old", "new"), [
    (b'"i1":[10,20,', b'"i1":[10,"20",'),
    (b"61.02", b"1e39"),  # out of range for float32
    (b'"sa":["a","b"', b'"sa":["a",null'),
    (b'"i1":[10,20,', b'"i1":[10,9223372036854775808,'),  # past int64
    (b'{"batch_size":3,', b'{"batch_size":3,"extra":[1,2,3],'),
], ids=["wrong-type", "float-range", "null", "int-range", "unknown-field"])
def test_an_error_in_a_missing_row_is_the_common_paths(server: LiveServer, old: bytes, new: bytes) -> None:
    raw = body([ROWS[0], ROWS[1], ROWS[2]])
    assert old in raw
    raw = raw.replace(old, new)
    with server.client() as client:
        assert client.post(EVAL, content=body([ROWS[0], ROWS[2]])).status_code == 200  # rows 0 and 2 hit
        answer = client.post(EVAL, content=raw)
    assert (answer.status_code, answer.content) == common_path_error(server, raw)


#: Values of each ``sli``/``aux`` input the generated bodies draw from: hits and misses (``_PLAIN``,
#: which the native readers take), and values they leave to the common path (``_EDGES``: non-ASCII,
#: a float past float32, an int past int64, an int for a float, a wrong type, ``null``).
_STRINGS = st.sampled_from(["a", "b", "c", "zz", "", "x/y"])
_PLAIN: dict[str, st.SearchStrategy[Any]] = {
    "sa": _STRINGS, "sl": _STRINGS, "kf": _STRINGS, "note": _STRINGS,
    "i1": st.sampled_from([10, 20, 30, 999, 0, -1, 2**63 - 1]),
    "fl": st.one_of(st.sampled_from([61.01, 0.005, 0.015, -0.0, 1e-320, 3.4e38]), st.floats(-1e4, 1e4)),
}
_EDGES: dict[str, st.SearchStrategy[Any]] = {
    "sa": st.just("\u00fc"), "sl": st.just("\u00fc"), "kf": st.just("\u00fc"), "note": st.just("\u00fc"),
    "i1": st.sampled_from([2**63, 1.0, True, "10", None]),
    "fl": st.sampled_from([1e39, 1e306, 7, "7", None, [1.5]]),
}


@st.composite
def bodies(draw: Any, names: tuple[str, ...]) -> bytes:
    """A body of ``names``' inputs: one row or a batch (a column of 1 value broadcasts), maybe
    with a column of the wrong length, a scalar for a list, ``batch_size`` off by one, an input
    missing, an unknown field or a name given twice; in any JSON spacing."""
    n = draw(st.one_of(st.none(), st.integers(1, 4)))
    edgy = draw(st.integers(0, 3)) == 0  # most bodies only plain values: partly cached batches
    pools = {name: st.one_of(_PLAIN[name], _EDGES[name]) if edgy else _PLAIN[name] for name in names}
    values: dict[str, Any] = {}
    for name in names:
        if n is None:
            values[name] = draw(pools[name])
        else:
            values[name] = draw(st.lists(pools[name], min_size=1, max_size=1) | st.lists(
                pools[name], min_size=n, max_size=n))
    how = draw(st.sampled_from(["plain"] * 9 + ["scalar", "length", "batch_size", "missing", "extra", "twice"]))
    name = draw(st.sampled_from(names))
    if how == "scalar" and n is not None:
        values[name] = values[name][0]
    elif how == "length":
        values[name] = [values[name]] * 2 if n is None else values[name] * 2
    elif how == "missing":
        del values[name]
    elif how == "extra":
        values["extra"] = values[name]
    if n is not None:
        values["batch_size"] = n + 1 if how == "batch_size" else n
    items = list(values.items())
    draw(st.randoms()).shuffle(items)
    raw = json.dumps(dict(items), indent=draw(st.sampled_from([None, 1])), ensure_ascii=False).encode()
    if how == "twice":
        raw = raw[:-1].rstrip() + b',"' + name.encode() + b'":' + json.dumps(draw(pools[name])).encode() + b"}"
    return raw


def common_path(raw: bytes) -> bytes:
    """The same body with a ``cache_key`` (accepted, never trusted): the same request, but one the
    native readers leave to the common path."""
    return b'{"cache_key":"k",' + raw[1:]


@pytest.mark.parametrize("transport", ["h1", "h2"])
@pytest.mark.parametrize("model", ["sli", "aux"])
def test_any_body_is_answered_as_the_common_path_answers_it(server: LiveServer, model: str, transport: str) -> None:
    """Differential: whatever the body, the native readers' answer (status and bytes) is the
    common path's, each from the same cache state: empty but for the rows of another body
    (some of this body's rows hit, the others are evaluated). Over HTTP/1.1 and HTTP/2 (each
    connection answers eval POSTs itself)."""
    service = server.registry.get(model)
    names = tuple(service.current.interface.dtypes)
    path = f"/v1/api/model/{model}/eval"
    with server.client() as client:
        h2 = RawH2(server.port) if transport == "h2" else None

        def post(raw: bytes) -> tuple[int, bytes]:
            if h2 is None:
                answer = client.post(path, content=raw)
                return answer.status_code, untimed(answer.content)
            status, content = h2.response(h2.request("POST", path, raw))
            return status, untimed(content)

        @settings(max_examples=150, deadline=None, database=None)
        @given(bodies(names), bodies(names))
        def check(raw: bytes, seed: bytes) -> None:
            answers = []
            for send in (raw, common_path(raw)):
                assert service.cache is not None
                service.cache.forget_older_entries()
                client.post(path, content=common_path(seed))
                answers.append(post(send))
            assert answers[0] == answers[1], raw

        try:
            check()
        finally:
            if h2 is not None:
                h2.close()


def test_concurrent_batches_sharing_missing_rows_get_their_own_rows(server: LiveServer) -> None:
    """Batches that miss the same rows at once: one evaluates each row, the others wait for it
    (single-flight), and every batch gets its own rows in its own order, as alone."""
    rnd = random.Random(7)
    batches = [[ROWS[rnd.randrange(len(ROWS))] for _ in range(rnd.randint(2, 6))] for _ in range(24)]
    bodies = [body(rows) for rows in batches]
    expected = []
    with server.client() as client:
        for raw in bodies:
            forget(server)
            expected.append(untimed(client.post(EVAL, content=common(raw)).content))
    for _round in range(3):
        forget(server)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda raw: server.client().post(EVAL, content=raw), bodies))
        assert [a.status_code for a in answers] == [200] * len(bodies)
        assert [untimed(a.content) for a in answers] == expected


@pytest.fixture(scope="module")
def versions(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("body-rows-versions")
    v1 = root / "v1"
    shutil.copytree(model_dirs["keras"], v1)
    # Same vocabularies, so the same dictHash: only the generation tells the answers apart.
    retrained = Path(model_builders.build_reweighted_model(str(root / "retrained")))
    grown = Path(model_builders.build_changed_vocab_model(str(root / "grown")))  # another dictHash
    return {"v1": v1, "retrained": retrained, "grown": grown, "link": root / "current"}


@pytest.fixture(scope="module")
def reloading(versions: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    point(versions["link"], versions["v1"])
    config = {
        "Models": [{"ID": "m", "URL": str(versions["link"]), "DataStore": "mem", "ReloadIntervalSec": 0.2,
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}],
    }
    live = LiveServer(config, tmp_path_factory.mktemp("body-rows-reload")).start()
    yield live
    live.stop()


@pytest.mark.parametrize("version", ["retrained", "grown"])
def test_a_reload_between_the_lookup_and_the_evaluation_answers_with_the_new_version(
        reloading: LiveServer, versions: dict[str, Path], monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """The connection reads a batch's keys and memory values under v1 (``answer_now``); v2 lands
    before the rest of the request runs. The answer is v2's for every row: never v1's cached rows
    joined with v2's evaluated ones. (The wrapper only times the reload; the reload is real.)"""
    service, path = reloading.registry.get("m"), "/v1/api/model/m/eval"
    raw = body(ROWS[:4])
    original = fast.EvalFastPath.answer_post

    async def reload_first(self: fast.EvalFastPath, at: str, sent: bytes, lookup: Any = None) -> tuple[int, bytes]:
        assert lookup is not None and not lookup.all_hit  # rows 0 and 1 were found in memory
        reloads = service.reloads
        point(versions["link"], versions[version])
        while service.reloads == reloads:
            await asyncio.sleep(0.05)
        return await original(self, at, sent, lookup)

    with reloading.client() as client:
        assert client.post(path, content=body(ROWS[:2])).status_code == 200  # v1's rows 0 and 1, cached
        monkeypatch.setattr(fast.EvalFastPath, "answer_post", reload_first)
        answer = client.post(path, content=raw)
        monkeypatch.undo()
        assert service.cache is not None
        service.cache.forget_older_entries()
        expected = client.post(path, content=common(raw))  # v2 evaluates every row
    reloads = service.reloads  # back to v1 for any later test
    point(versions["link"], versions["v1"])
    wait_until(lambda: service.reloads > reloads, "the reload back to v1")
    assert answer.status_code == expected.status_code == 200
    assert untimed(answer.content) == untimed(expected.content)
