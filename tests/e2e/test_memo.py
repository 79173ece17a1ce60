"""The exact-request response memo on a real server: what it answers, what it never answers."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from live_server import LiveServer
from raw_http import connect as raw_connect
from raw_http import post_request, read_response, split
from reloading import point, wait_until

from mly.config import load_config
from mly.errors import ConfigError

EVAL = "/v1/api/model/m/eval"
ROW = {"sa": "a", "sl": "b", "i1": 10, "fl": 1.25}
BATCH = {"batch_size": 3, "sa": ["a", "b", "zz"], "sl": ["a", "b", "c"], "i1": [10, 20, 30], "fl": [1.0, 2.0, 3.0]}


@pytest.fixture(scope="module")
def versions(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("memo-versions")
    v1 = root / "v1"
    shutil.copytree(model_dirs["keras"], v1)
    retrained = root / "v1-retrained"  # same vocabulary, so the same dictHash: only the generation differs
    shutil.copytree(v1, retrained)
    for path in retrained.rglob("*"):
        os.utime(path, (time.time() + 5, time.time() + 5))
    return {"v1": v1, "retrained": retrained, "link": root / "current"}


@pytest.fixture(scope="module")
def memo_server(versions: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    point(versions["link"], versions["v1"])
    config = {
        "Endpoint": {"WriteTimeoutMs": 1000},
        "Models": [{"ID": "m", "URL": str(versions["link"]), "DataStore": "mem", "ReloadIntervalSec": 0.2,
                    "Inputs": [{"Name": "fl", "Precision": 2}],
                    "ResponseMemo": {"SizeMb": 1, "MaxBodyBytes": 200}}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}],
    }
    live = LiveServer(config, tmp_path_factory.mktemp("memo")).start()
    yield live
    live.stop()


def memo_stats(client: httpx.Client) -> dict[str, int]:
    return client.get("/v1/api/model/m/meta/stats").json()["responseMemo"]


def test_a_repeated_body_is_answered_from_the_memo_with_a_fresh_envelope(memo_server: LiveServer) -> None:
    service = memo_server.registry.get("m")
    body = orjson.dumps(ROW) + b" "  # a byte no other test sends: a fresh memo key
    with memo_server.client() as client:
        first = client.post(EVAL, content=body)
        evaluated = service.rows_evaluated
        before = memo_stats(client)
        second = client.post(EVAL, content=body)
        after = memo_stats(client)
    assert first.status_code == second.status_code == 200
    a, b = first.json(), second.json()
    assert after["hits"] == before["hits"] + 1
    assert service.rows_evaluated == evaluated
    assert a["data"] == b["data"] and a["dictHash"] == b["dictHash"] == service.current.dict_hash
    assert list(b) == ["status", "dictHash", "serviceTimeMcs", "data"]  # Go's field order, envelope rebuilt
    assert isinstance(b["serviceTimeMcs"], int)


def test_a_batch_differing_in_one_row_misses_the_memo_but_hits_per_row(memo_server: LiveServer) -> None:
    service = memo_server.registry.get("m")
    with memo_server.client() as client:
        whole = client.post(EVAL, content=orjson.dumps(BATCH)).json()["data"]
        changed = {**BATCH, "fl": [1.0, 2.0, 3.5]}
        evaluated = service.rows_evaluated
        before = memo_stats(client)
        answer = client.post(EVAL, content=orjson.dumps(changed)).json()["data"]
        after = memo_stats(client)
    assert after["hits"] == before["hits"] and after["misses"] == before["misses"] + 1
    assert service.rows_evaluated == evaluated + 1  # only the changed row ran
    assert answer[:2] == whole[:2] and len(answer) == 3


def test_get_and_post_share_no_key_and_both_are_memoised(memo_server: LiveServer) -> None:
    params = {"sa": "b", "sl": "a", "i1": "20", "fl": "2.5"}
    with memo_server.client() as client:
        first = client.get(EVAL, params=params).json()
        before = memo_stats(client)
        second = client.get(EVAL, params=params).json()
        assert memo_stats(client)["hits"] == before["hits"] + 1
        posted = client.post(EVAL, content=orjson.dumps({"sa": "b", "sl": "a", "i1": 20, "fl": 2.5})).json()
    assert first["data"] == second["data"] == posted["data"]


@pytest.mark.parametrize("closing", [(), ("Connection: close",)], ids=["by-connection", "asgi"])
def test_a_body_spelling_a_get_key_is_not_answered_from_the_get_entry(
    memo_server: LiveServer, closing: tuple[str, ...]
) -> None:
    """A GET's memo key can never equal any POST body's: here a body of NUL and the query string."""
    query = f"sa=c&sl=a&i1=20&fl=3.5{len(closing)}"
    with memo_server.client() as client:
        for _ in range(2):  # the second one is a memo hit
            assert client.get(f"{EVAL}?{query}").status_code == 200
    with raw_connect(memo_server.url) as sock:
        sock.sendall(post_request(EVAL, b"\0" + query.encode(), *closing))
        status, _, answer = split(read_response(sock))
    assert status == 400 and "data" not in answer, answer


def test_errors_and_large_bodies_are_not_memoised(memo_server: LiveServer) -> None:
    big = orjson.dumps(ROW) + b" " * 300  # valid JSON, longer than MaxBodyBytes
    with memo_server.client() as client:
        before = memo_stats(client)
        for _ in range(2):
            bad = client.post(EVAL, content=orjson.dumps({**ROW, "sa": 1}))
            assert bad.status_code == 400 and "sa" in bad.json()["error"]
            assert client.post(EVAL, content=big).status_code == 200
        after = memo_stats(client)
    assert after["stored"] == before["stored"]
    assert after["hits"] == before["hits"]


def test_a_reload_starts_an_empty_memo(memo_server: LiveServer, versions: dict[str, Path]) -> None:
    """Retrained weights keep the dictHash, so only the generation can tell the answers apart."""
    service = memo_server.registry.get("m")
    body = orjson.dumps({**ROW, "fl": 3.75})
    with memo_server.client() as client:
        assert client.post(EVAL, content=body).status_code == 200
        hits = memo_stats(client)["hits"]
        assert client.post(EVAL, content=body).status_code == 200
        assert memo_stats(client)["hits"] == hits + 1
        reloads = service.reloads
        point(versions["link"], versions["retrained"])
        wait_until(lambda: service.reloads > reloads, "the reload")
        evaluated = service.rows_evaluated
        fresh = memo_stats(client)
        assert fresh["entries"] == 0 and fresh["hits"] == 0
        assert client.post(EVAL, content=body).status_code == 200
    assert service.rows_evaluated == evaluated + 1  # computed again by the new generation
    # Back to v1, and wait for it: a reload landing during a later test would empty its memo.
    reloads = service.reloads
    point(versions["link"], versions["v1"])
    wait_until(lambda: service.reloads > reloads, "the reload back to v1")


@pytest.mark.parametrize(("memo", "stream", "field"), [
    ({"SizeMb": 0}, False, "Models[0].ResponseMemo.SizeMb"),
    ({"MaxBodyBytes": 0}, False, "Models[0].ResponseMemo.MaxBodyBytes"),
    ({"SizeMb": 8}, True, "Models[0].ResponseMemo"),
])
def test_bad_memo_config_names_the_field(tmp_path: Path, memo: dict, stream: bool, field: str) -> None:
    model: dict = {"ID": "m", "URL": str(tmp_path), "ResponseMemo": memo}
    if stream:
        model["Stream"] = {"URL": str(tmp_path / "log.jsonl")}
    path = tmp_path / "c.json"
    path.write_text(orjson.dumps({"Models": [model]}).decode())
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert field in str(err.value)


# --- memo hits answered by the connection itself (no ASGI task) -------------------------------

def connect(server: LiveServer) -> socket.socket:
    return raw_connect(server.url)


def warmed(server: LiveServer, row: dict) -> bytes:
    body = orjson.dumps(row)
    with server.client() as client:
        assert client.post(EVAL, content=body).status_code == 200  # stored
    return body


def test_pipelined_hits_misses_and_errors_answer_in_order(memo_server: LiveServer) -> None:
    hit = warmed(memo_server, {**ROW, "fl": 4.5})
    miss = orjson.dumps({**ROW, "fl": 4.25, "i1": 30})
    bad = orjson.dumps({**ROW, "i1": "x"})
    with connect(memo_server) as sock:
        sock.sendall(b"".join(post_request(EVAL, b) for b in (hit, miss, hit, bad, hit)))
        pending = bytearray()
        answers = [split(read_response(sock, pending)) for _ in range(5)]
    assert [a[0] for a in answers] == [200, 200, 200, 400, 200]
    assert answers[0][2]["data"] == answers[2][2]["data"] == answers[4][2]["data"]
    assert "i1" in answers[3][2]["error"]


def test_a_head_answer_leaves_before_the_memo_hit_pipelined_behind_it(memo_server: LiveServer) -> None:
    hit = warmed(memo_server, {**ROW, "fl": 5.25})
    head = b"HEAD /v1/api/model/m/meta/config HTTP/1.1\r\nHost: t\r\n\r\n"
    with connect(memo_server) as sock:
        sock.sendall(head + post_request(EVAL, hit))
        received = bytearray()
        # Both answers are in once there are two heads and the POST's body (wherever it is).
        while received.count(b"\r\n\r\n") < 2 or not (
                received.endswith(b"}") or (received.endswith(b"\r\n\r\n") and b'"data"' in received)):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {bytes(received)!r}"
            received += chunk
    first_head, _, rest = bytes(received).partition(b"\r\n\r\n")
    assert b"content-type: application/json" in first_head.lower()
    # The HEAD's answer has no body: the POST's answer follows its head at once.
    assert rest.startswith(b"HTTP/1.1 200 "), received
    assert split(rest)[2]["status"] == "ok"


def _read_until(sock: socket.socket, received: bytearray, wanted: bytes) -> None:
    while wanted not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {wanted!r}, after {bytes(received)!r}"
        received += chunk


def test_a_request_read_with_a_hit_is_not_under_the_keep_alive_timer(memo_server: LiveServer) -> None:
    """A memo hit arms the keep-alive timer when answered; an NDJSON PUT parsed from the same read
    is a request in progress, so a line sent after the keep-alive timeout is still answered."""
    idle = memo_server.config.endpoint.idle_timeout_s
    hit = warmed(memo_server, {**ROW, "fl": 5.5})
    line = orjson.dumps(ROW) + b"\n"
    chunk = b"%x\r\n%s\r\n" % (len(line), line)
    put = (f"PUT {EVAL} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-ndjson\r\n"
           "Transfer-Encoding: chunked\r\n\r\n").encode()
    with connect(memo_server) as sock:
        sock.settimeout(idle + 10)
        sock.sendall(post_request(EVAL, hit) + put + chunk)
        received = bytearray()
        _read_until(sock, received, b'"index":0')
        time.sleep(idle + 1)
        sock.sendall(chunk + b"0\r\n\r\n")
        _read_until(sock, received, b'"index":1')
        _read_until(sock, received, b"\r\n0\r\n\r\n")


def test_a_hit_by_the_connection_has_the_normal_answers_headers(memo_server: LiveServer) -> None:
    body = warmed(memo_server, {**ROW, "fl": 4.75})
    with connect(memo_server) as sock:
        sock.sendall(post_request(EVAL, body))
        status, headers, answer = split(read_response(sock))
    assert status == 200
    assert headers[b"content-type"] == b"application/json" and b"date" in headers and b"server" in headers
    assert list(answer) == ["status", "dictHash", "serviceTimeMcs", "data"]


def test_a_body_that_arrives_late_is_still_answered(memo_server: LiveServer) -> None:
    body = warmed(memo_server, {**ROW, "fl": 1.75})
    request = post_request(EVAL, body)
    with connect(memo_server) as sock:
        cut = request.index(b"\r\n\r\n") + 10
        sock.sendall(request[:cut])
        time.sleep(0.2)  # the head alone: the connection waits for the rest without a task
        sock.sendall(request[cut:])
        status, _, answer = split(read_response(sock))
    assert status == 200 and "data" in answer


def test_expect_continue_and_connection_close_take_the_normal_path(memo_server: LiveServer) -> None:
    body = warmed(memo_server, {**ROW, "fl": 2.75})
    with connect(memo_server) as sock:
        sock.sendall(post_request(EVAL, b"", "Expect: 100-continue").replace(b"Content-Length: 0",
                                                                          b"Content-Length: %d" % len(body)))
        interim = read_response(sock)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert split(read_response(sock))[0] == 200
    with connect(memo_server) as sock:
        sock.sendall(post_request(EVAL, body, "Connection: close"))
        status, headers, _ = split(read_response(sock))
        assert status == 200 and headers.get(b"connection") == b"close"
        assert sock.recv(1) == b""  # closed after the answer


def test_hits_by_the_connection_are_counted(memo_server: LiveServer) -> None:
    service = memo_server.registry.get("m")
    body = warmed(memo_server, {**ROW, "fl": 3.25})
    with memo_server.client() as client:
        before = memo_stats(client)
    perf = service.metrics.perf
    evals = perf.total.metric(perf.keys, "eval")
    with connect(memo_server) as sock:
        for _ in range(3):
            sock.sendall(post_request(EVAL, body))
            assert split(read_response(sock))[0] == 200
    with memo_server.client() as client:
        assert memo_stats(client)["hits"] == before["hits"] + 3
    assert perf.total.metric(perf.keys, "eval") == evals + 3  # in {model}Perf like every other answer


class CountingSet(set):  # type: ignore[type-arg]
    """uvicorn's set of running request tasks, counting what is added to it."""

    added = 0

    def add(self, item: object) -> None:
        self.added += 1
        super().add(item)


def test_a_hit_starts_no_asgi_task_and_a_miss_does(memo_server: LiveServer) -> None:
    body = warmed(memo_server, {**ROW, "fl": 0.5})
    state = memo_server._server.server_state
    original, counting = state.tasks, CountingSet(state.tasks)
    state.tasks = counting  # connections opened from now on register their tasks here
    try:
        with connect(memo_server) as sock:
            for _ in range(3):
                sock.sendall(post_request(EVAL, body))
                assert split(read_response(sock))[0] == 200
            assert counting.added == 0
            sock.sendall(post_request(EVAL, orjson.dumps({**ROW, "fl": 0.75})))
            assert split(read_response(sock))[0] == 200
            assert counting.added == 1
    finally:
        state.tasks = original


def test_bodies_every_row_of_which_is_cached_count_as_memo_misses(
    model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Bodies that never repeat but whose every row the memory tier holds are answered by the
    connection without the normal path; the memo looked them up all the same, so they must count
    as its misses, or it never learns that it does not hit and stores every one of them forever."""
    from mly.service.memo import WINDOW

    config = {"Models": [{"ID": "m", "URL": model_dirs["keras"], "DataStore": "mem",
                          "Inputs": [{"Name": "fl", "Precision": 2}], "ResponseMemo": {"SizeMb": 1}}],
              "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}]}
    live = LiveServer(config, tmp_path_factory.mktemp("memo-learns")).start()
    try:
        rows = [{"sa": "a", "sl": "b", "i1": 10, "fl": i / 4} for i in range(40)]
        with live.client() as client:
            for row in rows:  # each row computed once, then cached
                assert client.post(EVAL, content=orjson.dumps(row)).status_code == 200
        memo = live.registry.get("m").current.memo
        assert memo is not None and memo.storing
        pairs = [(a, b) for a in rows for b in rows if a is not b][: WINDOW + 100]
        bodies = [orjson.dumps({"batch_size": 2, **{k: [a[k], b[k]] for k in a}}) for a, b in pairs]
        with raw_connect(live.url) as sock:
            for start in range(0, len(bodies), 50):
                chunk = bodies[start:start + 50]
                sock.sendall(b"".join(post_request(EVAL, body) for body in chunk))
                pending = bytearray()
                assert all(split(read_response(sock, pending))[0] == 200 for _ in chunk)
        assert live.registry.get("m").rows_evaluated == len(rows)  # every pair answered from the memory tier
        assert memo.misses >= WINDOW
        assert not memo.storing  # a window without a hit: it now uses one body in SAMPLE_EVERY
    finally:
        live.stop()
