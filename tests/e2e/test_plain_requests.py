"""Plain keep-alive eval POSTs answered straight from the read (``MlyHttpProtocol.answer_plain``).

The same bytes on the wire with the path on and off (``PLAIN_PATH``, read per connection),
answers in request order whatever mix of plain and other requests a connection sends, and
the connection's timers (read deadline, keep-alive) as for any other answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from live_server import BUFFER_SIZE, LiveServer
from raw_http import connect, post_request, read_response, split

from mly.http import plain as plain_module
from mly.http.h1limits import HEAD_SLACK
from mly.http.plain import BACKLOG_LIMIT

EVAL = "/v1/api/model/sli/eval"
RAW = "/v1/api/model/raw/eval"
_VARYING = re.compile(rb"(date: [^\r]*|content-length: \d+|\"serviceTimeMcs\":\d+)", re.IGNORECASE)
_fresh = iter(range(1, 1 << 30))


def row(**extra: Any) -> bytes:
    """A row no test sent before (its ``fl`` is new), so its first answer is computed."""
    return orjson.dumps({"sa": "a", "sl": "b", "i1": 10, "fl": 1000 + next(_fresh) / 4, **extra})


def batch(n: int) -> bytes:
    values = [1000 + next(_fresh) / 4 for _ in range(n)]
    return orjson.dumps({"batch_size": n, "sa": ["a"] * n, "sl": ["b"] * n, "i1": [10] * n, "fl": values})


def exchange(server: LiveServer, writes: list[bytes], answers: int) -> list[bytes]:
    """Each write sent on its own (a pause between, so the server reads them apart), then
    ``answers`` answers read, or fewer if the server closes; the varying parts blanked."""
    out: list[bytes] = []
    with connect(server.url) as sock:
        for i, data in enumerate(writes):
            if i:
                time.sleep(0.05)
            sock.sendall(data)
        pending = bytearray()
        for _ in range(answers):
            try:
                out.append(_VARYING.sub(b"~", read_response(sock, pending)))
            except (AssertionError, ConnectionResetError):  # closed: as many as it sent
                break
    return out


def both_ways(server: LiveServer, monkeypatch: pytest.MonkeyPatch, writes: list[bytes], answers: int) -> list[bytes]:
    """The answers with the plain path on (rows cold), off (rows cached by then), on again."""
    seen = []
    for plain in (True, False, True):
        monkeypatch.setattr(plain_module, "PLAIN_PATH", plain)
        seen.append(exchange(server, writes, answers))
    assert seen[0] == seen[1] == seen[2]
    return seen[0]


def cases() -> list[tuple[str, list[bytes], int]]:
    one, two, three = row(), row(), row()
    hit = post_request(EVAL, one)
    return [
        ("one row", [hit], 1),
        ("a batch", [post_request(EVAL, batch(32))], 1),
        ("pipelined", [hit + post_request(EVAL, two) + post_request(EVAL, three)], 3),
        ("plain, uncached model, plain", [hit + post_request(RAW, two) + hit], 3),
        ("plain then GET", [hit + f"GET {EVAL}?sa=a&sl=b&i1=10&fl=2.5 HTTP/1.1\r\nHost: t\r\n\r\n".encode()], 2),
        ("uncached then GET", [post_request(RAW, two) + f"GET {RAW}?sa=a&sl=b&i1=10&fl=2.5 HTTP/1.1\r\nHost: t\r\n\r\n".encode()], 2),
        ("uncached then half of one", [post_request(RAW, two) + hit[:30], hit[30:]], 2),
        ("split head and body", [hit[:-5], hit[-5:]], 1),
        ("plain then half of one", [hit + hit[:40], hit[40:]], 2),
        ("Connection: close", [post_request(EVAL, one, "Connection: close") + hit], 1),
        ("Expect", [post_request(EVAL, one, "Expect: 100-continue")], 1),
        ("bad JSON", [post_request(EVAL, b'{"sa": "a",') + hit], 2),
        ("a wrong type names the field", [post_request(EVAL, orjson.dumps({"sa": "a", "sl": "b", "i1": "x", "fl": 1.5}))], 1),
        ("unknown model", [post_request("/v1/api/model/nope/eval", one) + hit], 2),
        ("body over BufferSize", [post_request(EVAL, b" " * (BUFFER_SIZE + 1) + one) + hit], 2),
        ("then garbage", [hit + b"NOT HTTP\r\n\r\n"], 2),
        ("query string", [post_request(EVAL + "?x=1", one)], 1),
    ]


@pytest.mark.parametrize(("name", "writes", "answers"), cases(), ids=[c[0] for c in cases()])
def test_the_same_bytes_with_the_plain_path_on_and_off(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, name: str, writes: list[bytes], answers: int
) -> None:
    got = both_ways(server, monkeypatch, writes, answers)
    assert got and all(a.startswith(b"HTTP/1.1 ") for a in got)


def test_a_plain_miss_before_garbage_is_answered_before_the_400(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one difference: with the full parser alone, the garbage's 400 (and the close) is
    written while the POST before it is still evaluated, so the POST is never answered."""
    writes = [post_request(RAW, row()) + b"NOT HTTP\r\n\r\n"]
    monkeypatch.setattr(plain_module, "PLAIN_PATH", True)
    on = exchange(server, writes, 2)
    assert [a.split(b"\r\n", 1)[0] for a in on] == [b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"]
    monkeypatch.setattr(plain_module, "PLAIN_PATH", False)
    assert [a.split(b"\r\n", 1)[0] for a in exchange(server, writes, 2)] == [b"HTTP/1.1 400 Bad Request"]


def test_cached_plain_posts_take_no_asgi_cycle(server: LiveServer, asgi_cycles: list[str]) -> None:
    body = row()
    with server.client() as client:
        assert client.post(EVAL, content=body).status_code == 200
    asgi_cycles.clear()
    perf = server.registry.get("sli").metrics.perf
    evals = perf.total.metric(perf.keys, "eval")
    with connect(server.url) as sock:
        sock.sendall(post_request(EVAL, body) * 3)
        pending = bytearray()
        answers = [split(read_response(sock, pending)) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 200] and asgi_cycles == []
    assert answers[0][2]["data"] == answers[2][2]["data"]
    assert perf.total.metric(perf.keys, "eval") == evals + 3  # counted like any answer


@pytest.fixture(scope="module")
def lazy_server(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``lazy``: every evaluation waits 100 ms for a batch to fill, so a miss is in flight long
    enough for the next request to arrive in another read; ``sli``: cached."""
    config = {"Models": [
        {"ID": "lazy", "URL": model_dirs["keras"], "Batch": {"BatchWait": 100_000_000, "MaxBatchSize": 1000}},
        {"ID": "sli", "URL": model_dirs["keras"], "DataStore": "mem", "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 2}}]}
    live = LiveServer(config, tmp_path_factory.mktemp("lazy")).start()
    yield live
    live.stop()


def test_a_plain_hit_read_while_a_plain_miss_is_answered_waits_for_it(
    lazy_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The miss is answered by a task; the hit, read while it runs, must not be answered first."""
    cached = row()
    with lazy_server.client() as client:
        expected = client.post(EVAL, content=cached).json()["data"]
    for plain in (True, False):
        monkeypatch.setattr(plain_module, "PLAIN_PATH", plain)
        with connect(lazy_server.url) as sock:
            started = time.monotonic()
            sock.sendall(post_request("/v1/api/model/lazy/eval", row()))
            time.sleep(0.03)  # in another read, while the miss waits for its batch
            sock.sendall(post_request(EVAL, cached) + post_request(EVAL, cached))
            pending = bytearray()
            answers = [split(read_response(sock, pending)) for _ in range(3)]
            assert time.monotonic() - started > 0.09  # the miss was still in flight when the hit came
        assert [a[0] for a in answers] == [200] * 3, plain
        # Out of order, the hit's answer would come first.
        assert answers[0][2]["data"] != expected and answers[1][2]["data"] == answers[2][2]["data"] == expected


def test_a_long_burst_behind_a_slow_plain_miss_is_answered_in_order(lazy_server: LiveServer) -> None:
    """Past ``BACKLOG_LIMIT`` bytes held behind the miss, reading pauses; it resumes after the answer."""
    cached = row()
    with lazy_server.client() as client:
        expected = client.post(EVAL, content=cached).json()["data"]
    hit = post_request(EVAL, cached)
    burst = BACKLOG_LIMIT // len(hit) * 3
    with connect(lazy_server.url) as sock:
        sock.sendall(post_request("/v1/api/model/lazy/eval", row()))
        time.sleep(0.03)
        sock.sendall(hit * burst)
        pending = bytearray()
        answers = [split(read_response(sock, pending)) for _ in range(burst + 1)]
    assert answers[0][0] == 200 and answers[0][2]["data"] != expected
    assert all(a[0] == 200 and a[2]["data"] == expected for a in answers[1:])


@pytest.mark.parametrize(("model", "tail"), [("sli", b""), ("sli", b"\r\n"), ("raw", b""), ("raw", b"\r\n")],
                         ids=["hit", "hit then a stray CRLF", "miss", "miss then a stray CRLF"])
def test_a_plain_answer_then_silence_is_closed_after_the_idle_timeout(server: LiveServer, model: str, tail: bytes) -> None:
    """Some clients end a POST with an extra CRLF, which llhttp skips without beginning a
    request: the connection is idle after it all the same, so the idle timer must run. A miss
    is answered by a task, the CRLF then held and fed on after its answer."""
    idle = server.config.endpoint.idle_timeout_s
    cached = row()
    with server.client() as client:
        assert client.post(EVAL, content=cached).status_code == 200
    with connect(server.url) as sock:
        sock.settimeout(idle + 10)
        sock.sendall(post_request(f"/v1/api/model/{model}/eval", cached) + tail)
        assert split(read_response(sock))[0] == 200
        started = time.monotonic()
        try:
            rest = sock.recv(100)
        except TimeoutError:  # pragma: no cover - the failure this test is for
            rest = b"still open"
    assert rest == b"" and time.monotonic() - started < idle + 5


def head_of(size: int, body: bytes) -> bytes:
    """A plain eval POST head of exactly ``size`` bytes, padded with fields that have no space
    after the colon (which ``h1limits.head_size`` counts as ``name: value``, one byte more each)."""
    start = f"POST {EVAL} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n".encode()
    rest = size - len(start) - 2
    full = rest // 100 - 1
    last = rest - full * 100
    fields = [b"a:" + b"v" * 96 + b"\r\n"] * full + [b"a:" + b"v" * (last - 4) + b"\r\n"]
    head = start + b"".join(fields) + b"\r\n"
    assert len(head) == size
    return head


def test_a_head_the_limits_count_past_max_header_bytes_is_refused_with_the_path_on(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most ``MaxHeaderBytes`` plus the slack on the wire, but more as ``h1limits`` counts
    it: 431 with the path off, so with it on too, even for a row whose answer is ready."""
    limit = server.config.endpoint.max_header_bytes + HEAD_SLACK
    body = row()
    with server.client() as client:
        assert client.post(EVAL, content=body).status_code == 200
    got = both_ways(server, monkeypatch, [head_of(limit, body) + body], 1)
    assert got[0].startswith(b"HTTP/1.1 431 ")


def test_an_h2c_offer_after_a_plain_answer_is_refused_as_on_any_later_request(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a connection's first request may offer ``Upgrade: h2c`` (then declined and served);
    a later one gets 400, also when the first was answered straight from the read."""
    body = row()
    with server.client() as client:
        assert client.post(EVAL, content=body).status_code == 200
    offer = post_request(EVAL, body, "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
                         "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA")
    got = both_ways(server, monkeypatch, [post_request(EVAL, body), offer], 2)
    assert got[0].startswith(b"HTTP/1.1 200 ") and got[1].startswith(b"HTTP/1.1 400 ")
    raw = both_ways(server, monkeypatch, [post_request(RAW, body), offer.replace(EVAL.encode(), RAW.encode())], 2)
    assert raw[0].startswith(b"HTTP/1.1 200 ") and raw[1].startswith(b"HTTP/1.1 400 ")
