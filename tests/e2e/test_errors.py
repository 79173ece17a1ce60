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
    response = call(server, "DELETE", "/v1/api/model/sli/eval")
    assert_error(response, 405, "method DELETE not allowed on /v1/api/model/sli/eval: use GET, POST, PUT")
    assert response.headers["allow"] == "GET, POST, PUT"


@pytest.mark.parametrize("path", ["/v1/api/model/sli/meta/config", "/v1/api/model/sli/meta/dictionary",
                                  "/v1/api/model/sli/meta/stats", "/v1/api/health", "/v1/api/config"])
def test_other_routes_answer_a_wrong_method_in_the_eval_error_shape(server: LiveServer, path: str) -> None:
    response = call(server, "POST", path, content=b"{}")
    assert_error(response, 405, f"method POST not allowed on {path}: use GET, HEAD")
    assert response.headers["content-type"] == "application/json"
    assert "GET" in response.headers["allow"]


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
    # 2^70 and 2^64 reach the server as floats (past what the JSON parser keeps as an int): still "out of range".
    for text in (b"1180591620717411303424", b"18446744073709551616", b"9223372036854775808", b"-9223372036854775809"):
        body = b'{"sa":"a","sl":"b","fl":0.5,"i1":' + text + b"}"
        assert_error(eval_post(server, body), 400, "i1: integer out of range for int64")
    assert_error(eval_post(server, b'{"sa":"a","sl":"b","i1":10,"fl":1e400}'), 400, "malformed JSON")


@pytest.mark.parametrize("value", [b"1e39", b"-3.5e38", b"1" + b"0" * 39])
def test_floats_that_do_not_fit_float32(server: LiveServer, value: bytes) -> None:
    body = b'{"sa":"a","sl":"b","i1":10,"fl":' + value + b"}"
    assert_error(eval_post(server, body), 400, "fl: out of range for float32")
    batch = b'{"batch_size":2,"sa":["a"],"sl":["b"],"i1":[10],"fl":[0.5,' + value + b"]}"
    assert_error(eval_post(server, batch), 400, "fl[1]: out of range for float32")


def test_get_and_post_word_a_bad_value_the_same(server: LiveServer) -> None:
    post = eval_post(server, orjson.dumps({**ROW, "i1": "nine"}))
    get = call(server, "GET", "/v1/api/model/sli/eval", params={**ROW, "i1": "nine"})
    assert post.status_code == get.status_code == 400
    assert post.json()["error"] == get.json()["error"] == "i1: expected int, got string 'nine'"


def test_get_refuses_a_repeated_key(server: LiveServer) -> None:
    query = "sa=a&sl=b&i1=10&fl=0.5&i1=11"
    assert_error(call(server, "GET", f"/v1/api/model/sli/eval?{query}"), 400, "i1: given more than once")


def test_batch_size_over_the_limit_is_413_before_any_work(server: LiveServer) -> None:
    """A 100-byte body must not make the server build a million rows (Endpoint.MaxBatchSize, default 10,000)."""
    for size in (10_001, 1_000_000, 2**63, 2**64):
        body = b'{"sa":["a"],"sl":["b"],"i1":[10],"fl":[0.5],"batch_size":' + str(size).encode() + b"}"
        assert_error(eval_post(server, body), 413, "batch_size", "limit of 10000", "Endpoint.MaxBatchSize")
    ok = eval_post(server, orjson.dumps({"batch_size": 10_000, "sa": ["a"], "sl": ["b"], "i1": [10], "fl": [0.5]}))
    assert ok.status_code == 200 and len(ok.json()["data"]) == 10_000


def test_batch_size_zero_with_arrays_names_batch_size(server: LiveServer) -> None:
    body = {"batch_size": 0, "sa": ["a"], "sl": ["b"], "i1": [10], "fl": [0.5]}
    assert_error(eval_post(server, orjson.dumps(body)), 400, "batch_size: must be at least 1 when inputs are arrays")
    assert eval_post(server, orjson.dumps({**ROW, "batch_size": 0})).status_code == 200  # Go: 0 is one row
    assert_error(eval_post(server, orjson.dumps({**ROW, "sa": ["a"]})), 400, "sa: expected string, got array (arrays need batch_size)")


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
        ({**ROW, "i1": "ten"}, ["i1: expected int, got string 'ten'"]),
        ({**ROW, "i1": "1_000"}, ["i1: expected int, got string '1_000'"]),
        ({**ROW, "fl": "x.5"}, ["fl: expected float, got string 'x.5'"]),
        ({**ROW, "fl": "inf"}, ["fl: must be a finite number, got inf"]),
        ({**ROW, "fl": "nan"}, ["fl: must be a finite number, got nan"]),
        ({**ROW, "fl": "1e39"}, ["fl: out of range for float32"]),
        ({**ROW, "i1": str(2**64)}, ["i1: integer out of range for int64"]),
        ({**ROW, "batch_size": "2"}, ["batch_size: not accepted on GET"]),
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
