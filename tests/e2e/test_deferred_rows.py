"""Single rows are encoded with their batch (in the inference thread), with or without a cache:
concurrent requests get the same answers as alone, and a bad one among them gets its own 400."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from live_server import LiveServer
from raw_http import connect, post_request, read_response, split

PATH = "/v1/api/model/raw/eval"


def post(server: LiveServer, body: bytes) -> tuple[int, Any]:
    with connect(server.url) as sock:
        sock.sendall(post_request(PATH, body))
        status, _, answer = split(read_response(sock, bytearray()))
    return status, answer


def test_the_uncached_model_defers_its_single_rows(server: LiveServer) -> None:
    assert server.registry.get("raw").current.row_builder is not None
    assert server.registry.get("aux").current.row_builder is None  # an auxiliary input: validated up front


def test_concurrent_rows_answer_as_alone_and_a_bad_row_gets_its_own_error(server: LiveServer) -> None:
    good = [{"sa": "a" if k % 2 else "zz-oov", "sl": "b", "i1": k, "fl": k / 8} for k in range(48)]
    bad = {
        7: ({"sa": "a", "sl": "b", "i1": "ten", "fl": 1.0}, "i1: expected int, got string 'ten'"),
        23: ({"sa": 5, "sl": "b", "i1": 1, "fl": 1.0}, "sa: expected string, got int 5"),
        40: ({"sa": "a", "sl": "b", "i1": 1, "fl": 1e39}, "fl: out of range for float32, got 1e+39"),
    }
    bodies = [orjson.dumps(bad[k][0] if k in bad else row) for k, row in enumerate(good)]
    alone = {k: post(server, body) for k, body in enumerate(bodies)}  # one at a time: batches of one
    counters = server.registry.get("raw").current.batcher.counters
    batches, rows = counters.batches, counters.rows
    for _ in range(3):
        with ThreadPoolExecutor(16) as pool:
            together = list(pool.map(lambda body: post(server, body), bodies))
        for k, (status, answer) in enumerate(together):
            if k in bad:
                assert status == 400 and answer["error"] == bad[k][1]
            else:
                assert status == 200 and answer["data"] == alone[k][1]["data"]
    assert [alone[k][0] for k in bad] == [400] * len(bad)
    # A bad row is dispatched with its batch and refused when the batch builds its columns.
    assert counters.rows - rows == 3 * len(bodies)
    assert counters.batches - batches < 3 * len(bodies)  # some rows were built together


def test_a_model_error_counter_ignores_bad_rows(server: LiveServer) -> None:
    batcher = server.registry.get("raw").current.batcher
    errors = batcher.counters.errors
    status, answer = post(server, orjson.dumps({"sa": "a", "sl": "b", "i1": 1.5, "fl": 1.0}))
    assert status == 400 and answer["error"] == "i1: expected int, got float 1.5"
    assert batcher.counters.errors == errors


SLI = "/v1/api/model/sli/eval"  # cached: a single row with a key from its plain values is deferred too


def test_refused_rows_among_concurrent_valid_ones_get_their_own_error_and_valid_rows_their_answer(
    server: LiveServer,
) -> None:
    generation = server.registry.get("sli").current
    assert generation.row_builder is not None
    # Out-of-range float32 values are refused by encoding; they have no key from their plain
    # values (they once shared one, infinity's, and waited on whichever came first).
    rows = [{"sa": "a", "sl": "b", "i1": 10, "fl": float(f"{k + 1}e39")} for k in range(24)]
    assert {generation.key_schema.key_if_plain(row) for row in rows} == {None}
    valid = [{"sa": "a", "sl": "b", "i1": 10, "fl": 60 + k / 4} for k in range(24)]
    bodies = [orjson.dumps(row) for pair in zip(rows, valid) for row in pair]

    def post_sli(body: bytes) -> tuple[int, Any]:
        with connect(server.url) as sock:
            sock.sendall(post_request(SLI, body))
            status, _, answer = split(read_response(sock, bytearray()))
        return status, answer

    alone = {body: post_sli(body) for body in bodies[1::2]}  # the valid rows, one at a time
    for _ in range(3):
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(post_sli, bodies))
        for body, (status, answer) in zip(bodies, answers):
            value = orjson.loads(body)["fl"]
            if value > 1e38:
                assert status == 400 and answer["error"] == f"fl: out of range for float32, got {value!r}"
            else:
                assert status == 200 and answer["data"] == alone[body][1]["data"]
    assert len(generation.flight) == 0  # nothing left in flight
