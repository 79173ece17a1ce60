"""Single rows of an uncached model are encoded with their batch (in the inference thread):
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
