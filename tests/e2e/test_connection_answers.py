"""Eval POSTs answered by the connection itself (no ASGI cycle): the same answers, errors,
headers, order and metrics as the ASGI path, and the cases that must still take that path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from live_server import BUFFER_SIZE, LiveServer
from raw_http import connect, post_request, read_response, split

ROW = {"sa": "a", "sl": "b", "i1": 10, "fl": 1.25}


def ask(server: LiveServer, *requests: bytes) -> list[tuple[int, dict[bytes, bytes], Any]]:
    """Send every request at once (pipelined) on one connection; the answers, in order."""
    with connect(server.url) as sock:
        sock.sendall(b"".join(requests))
        pending = bytearray()
        return [split(read_response(sock, pending)) for _ in requests]


@pytest.mark.parametrize("model", ["sli", "raw"])  # with and without a cache
def test_a_post_is_answered_without_an_asgi_cycle_and_matches_the_get_answer(
    server: LiveServer, asgi_cycles: list[str], model: str
) -> None:
    row = {**ROW, "fl": 7.25}
    path = f"/v1/api/model/{model}/eval"
    [(status, headers, answer)] = ask(server, post_request(path, orjson.dumps(row)))
    assert status == 200 and asgi_cycles == []
    assert headers[b"content-type"] == b"application/json" and b"date" in headers and b"server" in headers
    assert int(headers[b"content-length"]) == len(orjson.dumps(answer))
    with server.client() as client:  # a GET takes the ASGI path: the same data
        by_get = client.get(path, params={k: str(v) for k, v in row.items()}).json()
    assert asgi_cycles == [path]
    assert answer["data"] == by_get["data"] and answer["dictHash"] == by_get["dictHash"]


def test_errors_by_the_connection_have_their_status_and_name_the_field(
    server: LiveServer, asgi_cycles: list[str]
) -> None:
    answers = ask(
        server,
        post_request("/v1/api/model/sli/eval", orjson.dumps({**ROW, "i1": "ten"})),
        post_request("/v1/api/model/sli/eval", b"{not json"),
        post_request("/v1/api/model/nope/eval", orjson.dumps(ROW)),
        post_request("/v1/api/model/sli/eval", orjson.dumps({"sa": "a"})),
    )
    assert [a[0] for a in answers] == [400, 400, 404, 400]
    assert "i1" in answers[0][2]["error"]
    assert "sli" in answers[2][2]["error"]  # names the served models
    assert "sl" in answers[3][2]["error"]  # names a missing input
    assert all(a[1][b"content-type"] == b"application/json" for a in answers)
    assert asgi_cycles == []


def test_pipelined_misses_answer_in_order(server: LiveServer) -> None:
    rows = [{**ROW, "fl": 20 + i / 4} for i in range(6)]
    requests = [post_request("/v1/api/model/sli/eval", orjson.dumps(r)) for r in rows]
    answers = ask(server, *requests)
    singly = [ask(server, r)[0] for r in requests]
    assert [a[0] for a in answers] == [200] * 6
    assert [a[2]["data"] for a in answers] == [s[2]["data"] for s in singly]


def test_misses_by_the_connection_are_counted_like_any_answer(server: LiveServer) -> None:
    perf = server.registry.get("raw").metrics.perf
    evals = perf.total.metric(perf.keys, "eval")
    invalid = perf.total.metric(perf.keys, "invalid")
    ask(server, post_request("/v1/api/model/raw/eval", orjson.dumps(ROW)),
        post_request("/v1/api/model/raw/eval", orjson.dumps({**ROW, "i1": 1.5})))
    assert perf.total.metric(perf.keys, "eval") == evals + 1
    assert perf.total.metric(perf.keys, "invalid") == invalid + 1


def test_a_client_gone_before_its_answer_harms_nothing(server: LiveServer) -> None:
    for i in range(20):
        with connect(server.url) as sock:
            sock.sendall(post_request("/v1/api/model/sli/eval", orjson.dumps({**ROW, "fl": 40 + i / 4})))
    [(status, _, answer)] = ask(server, post_request("/v1/api/model/sli/eval", orjson.dumps(ROW)))
    assert status == 200 and "data" in answer


def test_bodies_over_the_limit_and_other_methods_take_the_asgi_path(
    server: LiveServer, asgi_cycles: list[str]
) -> None:
    front = server.app
    big = orjson.dumps({**ROW, "pad": "x" * (front.front_body_limit + 10)})
    [(status, _, answer)] = ask(server, post_request("/v1/api/model/sli/eval", big))
    assert status in (400, 413) and "error" in answer
    put = post_request("/v1/api/model/sli/eval", orjson.dumps(ROW)).replace(b"POST", b"PUT", 1)
    [(status, _, _)] = ask(server, put)
    assert status == 200
    # Connection: close and HTTP/1.0 end the connection after the answer: uvicorn's path does that.
    closing = post_request("/v1/api/model/sli/eval", orjson.dumps(ROW), "Connection: close")
    [(status, headers, _)] = ask(server, closing)
    assert status == 200 and headers[b"connection"] == b"close"
    http10 = post_request("/v1/api/model/sli/eval", orjson.dumps(ROW)).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    [(status, _, _)] = ask(server, http10)
    assert status == 200
    assert asgi_cycles == ["/v1/api/model/sli/eval"] * 4


def test_paths_that_only_end_in_eval_are_left_to_the_app(server: LiveServer, asgi_cycles: list[str]) -> None:
    # Not a model's eval URI: the app answers them (not found), as it does without the connection's path.
    paths = ["/foo/eval", "/v1/api/model/sli/x/eval", "/v1/api/model//eval"]
    answers = ask(server, *(post_request(path, orjson.dumps(ROW)) for path in paths))
    assert [a[0] for a in answers] == [404] * 3
    assert asgi_cycles == paths
    assert all("unknown model" not in str(a[2]) for a in answers)


def test_middleware_wrapped_around_the_app_sees_every_eval_post(
    model_dirs: dict[str, str], tmp_path: Path
) -> None:
    config = {"Models": [{"ID": "m", "URL": model_dirs["keras"], "DataStore": "mem",
                          "Inputs": [{"Name": "fl", "Precision": 2}], "ResponseMemo": {"SizeMb": 1}}],
              "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}]}
    live = LiveServer(config, tmp_path)
    seen: list[str] = []

    class Counting:  # the usual shape of ASGI middleware: it keeps the app it wraps in ``app``
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append(scope["method"])
            await self.app(scope, receive, send)

    live._server.config.app = Counting(live.app)
    live.start()
    try:
        body = post_request("/v1/api/model/m/eval", orjson.dumps(ROW))
        answers = ask(live, body, body)  # a miss, then a memo hit
        assert [a[0] for a in answers] == [200, 200]
        assert seen == ["POST", "POST"]
    finally:
        live.stop()


@pytest.mark.parametrize("size", [BUFFER_SIZE + 1000, 10 * BUFFER_SIZE])
def test_a_body_over_buffer_size_is_refused_alone_and_pipelined(server: LiveServer, size: int) -> None:
    """A body that arrived while its request waited behind another gets the same 413."""
    path = "/v1/api/model/sli/eval"
    big = orjson.dumps(ROW) + b" " * size  # valid JSON: answered 200 if the size goes unchecked
    chunked = (f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               f"{len(big):x}\r\n").encode() + big + b"\r\n0\r\n\r\n"
    small = post_request(path, orjson.dumps(ROW))
    for request in (post_request(path, big), chunked):
        [(alone, _, _)] = ask(server, request)
        behind = ask(server, small, request, small)
        assert (alone, [a[0] for a in behind]) == (413, [200, 413, 200])
