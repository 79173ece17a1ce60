"""Every bad request gets a JSON error with the right status that names the field."""

from __future__ import annotations

import httpx
import orjson
import pytest
from live_server import BUFFER_SIZE, LiveServer

ROW = {"sa": "a", "sl": "b", "i1": 10, "fl": 0.5}


def call(server: LiveServer, method: str, path: str, **kwargs: object) -> httpx.Response:
    with server.client() as client:
        return client.request(method, path, **kwargs)  # type: ignore[arg-type]


def assert_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error", body
    for fragment in fragments:
        assert fragment in body["error"], body


def eval_post(server: LiveServer, body: bytes, model: str = "sli") -> httpx.Response:
    return call(server, "POST", f"/v1/api/model/{model}/eval", content=body)


def test_unknown_model_is_404(server: LiveServer) -> None:
    assert_error(eval_post(server, orjson.dumps(ROW), model="nope"), 404, "unknown model 'nope'")
    assert_error(call(server, "GET", "/v1/api/model/nope/meta/config"), 404, "unknown model 'nope'")
    assert_error(call(server, "GET", "/v1/api/model/nope/meta/dictionary"), 404, "'nope'")


def test_unknown_path_and_method(server: LiveServer) -> None:
    assert_error(call(server, "GET", "/v1/api/nothing"), 404, "/v1/api/nothing")
    assert_error(call(server, "GET", "/v1/api/model/sli/meta/other"), 404)
    assert call(server, "DELETE", "/v1/api/model/sli/eval").status_code == 405


def test_missing_inputs_are_listed(server: LiveServer) -> None:
    assert_error(eval_post(server, orjson.dumps({"sa": "a", "fl": 1.0})), 400, "missing fields: i1, sl")


def test_unknown_field(server: LiveServer) -> None:
    assert_error(eval_post(server, orjson.dumps({**ROW, "sx": "a"})), 400, "unknown field: 'sx'", "available:")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({**ROW, "sa": 5}, ["sa", "expected string"]),
        ({**ROW, "i1": "10"}, ["i1", "expected"]),
        ({**ROW, "i1": 1.5}, ["i1"]),
        ({**ROW, "i1": True}, ["i1"]),
        ({**ROW, "fl": "x"}, ["fl"]),
        ({**ROW, "fl": None}, ["fl"]),
        ({**ROW, "i1": 2**64 - 1}, ["i1"]),
        ({**ROW, "sa": ["a"]}, ["sa"]),
    ],
)
def test_wrong_type_single(server: LiveServer, body: dict, fragments: list[str]) -> None:
    assert_error(eval_post(server, orjson.dumps(body)), 400, *fragments)


def test_integers_out_of_range(server: LiveServer) -> None:
    for text in (b"1180591620717411303424", b"9223372036854775808", b"-9223372036854775809"):
        body = b'{"sa":"a","sl":"b","fl":0.5,"i1":' + text + b"}"
        assert_error(eval_post(server, body), 400, "i1")
    assert_error(eval_post(server, b'{"sa":"a","sl":"b","i1":10,"fl":1e400}'), 400, "malformed JSON")


def test_wrong_type_inside_batch_names_row(server: LiveServer) -> None:
    body = {"batch_size": 3, "sa": ["a", "b", 7], "sl": ["a"], "i1": [10], "fl": [0.1]}
    assert_error(eval_post(server, orjson.dumps(body)), 400, "sa[2]")
    body = {"batch_size": 2, "sa": "a", "sl": ["a"], "i1": [10], "fl": [0.1]}
    assert_error(eval_post(server, orjson.dumps(body)), 400, "sa")


def test_batch_array_longer_than_batch_size(server: LiveServer) -> None:
    body = {"batch_size": 2, "sa": ["a", "b", "c"], "sl": ["a"], "i1": [10], "fl": [0.1]}
    assert_error(eval_post(server, orjson.dumps(body)), 400, "sa", "3", "batch_size")


def test_batch_array_shorter_than_batch_size(server: LiveServer) -> None:
    body = {"batch_size": 3, "sa": ["a", "b"], "sl": ["a"], "i1": [10], "fl": [0.1]}
    assert_error(eval_post(server, orjson.dumps(body)), 400, "sa", "2")


def test_empty_batch_array(server: LiveServer) -> None:
    body = {"batch_size": 2, "sa": [], "sl": ["a"], "i1": [10], "fl": [0.1]}
    assert_error(eval_post(server, orjson.dumps(body)), 400, "sa")


@pytest.mark.parametrize("batch_size", [-1, "2", 1.5, True])
def test_bad_batch_size(server: LiveServer, batch_size: object) -> None:
    body = {"batch_size": batch_size, "sa": ["a"], "sl": ["a"], "i1": [10], "fl": [0.1]}
    assert_error(eval_post(server, orjson.dumps(body)), 400, "batch_size")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty request body"),
        (b"   ", "empty request body"),
        (b"{\"sa\": ", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\"text\"", "must be a JSON object"),
        (b"{}", "missing fields"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_malformed_bodies(server: LiveServer, body: bytes, fragment: str) -> None:
    assert_error(eval_post(server, body), 400, fragment)


def test_body_over_buffer_size_is_413(server: LiveServer) -> None:
    big = orjson.dumps({**ROW, "sa": "a" * BUFFER_SIZE})
    assert_error(eval_post(server, big), 413, str(BUFFER_SIZE), "BufferSize")

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(BUFFER_SIZE // 1024 + 2):
            yield b" " * 1024

    assert_error(eval_post(server, chunks()), 413, "BufferSize")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({**ROW, "i1": "ten"}, ["i1", "expected an integer", "'ten'"]),
        ({**ROW, "fl": "x.5"}, ["fl", "expected a number"]),
        ({**ROW, "zz": "1"}, ["unknown field: 'zz'"]),
        ({"sa": "a"}, ["missing fields: fl, i1, sl"]),
    ],
)
def test_bad_get_values(server: LiveServer, params: dict, fragments: list[str]) -> None:
    assert_error(call(server, "GET", "/v1/api/model/sli/eval", params=params), 400, *fragments)


def test_errors_do_not_break_the_server(server: LiveServer) -> None:
    assert eval_post(server, b"{").status_code == 400
    ok = eval_post(server, orjson.dumps(ROW))
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
