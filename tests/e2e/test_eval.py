"""Eval over real HTTP on loopback: single, batch, broadcast, GET/PUT, transformers."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from live_server import LiveServer
from model_builders import expected_keras_lookup


def post(server: LiveServer, model: str, body: object, method: str = "POST") -> tuple[int, dict]:
    with server.client() as client:
        response = client.request(method, f"/v1/api/model/{model}/eval", content=orjson.dumps(body))
    return response.status_code, response.json()


def f32(value: float) -> float:
    """What a float32 prints as (shortest float32 repr), as the server writes it."""
    return float(repr(np.float32(value)).removeprefix("np.float32(").removesuffix(")"))


def test_single_row(server: LiveServer) -> None:
    status, body = post(server, "sli", {"sa": "b", "sl": "c", "i1": 20, "fl": 1.5})
    assert status == 200, body
    assert list(body) == ["status", "dictHash", "serviceTimeMcs", "data"]
    assert body["status"] == "ok"
    assert body["dictHash"] == server.registry.get("sli").current.dict_hash != 0
    assert isinstance(body["serviceTimeMcs"], int) and body["serviceTimeMcs"] >= 0
    want = expected_keras_lookup(["b"], ["c"], [20], [1.5])
    data = body["data"]
    assert list(data) == ["label_id", "score", "vec"]  # sorted output names
    assert data["score"] == pytest.approx(float(want["score"][0, 0]))
    assert data["score"] == 2 + 30 + 200 + 0.75 + 0.25
    assert data["label_id"] == int(want["label_id"][0, 0])
    # Wide outputs keep every value (Go truncates to the first; docs/differences-from-go.md #8).
    assert data["vec"] == pytest.approx(want["vec"][0].tolist())


def test_batch_rows_in_order_with_broadcast(server: LiveServer) -> None:
    body = {"batch_size": 3, "sa": ["a", "zz", "c"], "sl": ["b"], "i1": [10, 20, 999], "fl": [0.0, 1.0, 2.0]}
    status, out = post(server, "sli", body)
    assert status == 200, out
    want = expected_keras_lookup(["a", "zz", "c"], ["b"] * 3, [10, 20, 999], [0.0, 1.0, 2.0])
    assert isinstance(out["data"], list) and len(out["data"]) == 3
    assert [row["score"] for row in out["data"]] == pytest.approx(want["score"][:, 0].tolist())
    assert [row["label_id"] for row in out["data"]] == want["label_id"][:, 0].tolist()


def test_batch_size_after_inputs_and_batch_of_one(server: LiveServer) -> None:
    # Go needs batch_size first; mly parses the whole object first.
    status, out = post(server, "sli", {"sa": ["a"], "sl": ["a"], "i1": [10], "fl": [0.5], "batch_size": 1})
    assert status == 200, out
    assert isinstance(out["data"], list) and len(out["data"]) == 1


def test_float_precision_rounds_what_is_evaluated(server: LiveServer) -> None:
    # fl has Precision 2: 0.504 and 0.496 both key (and evaluate) as 0.50.
    _, a = post(server, "sli", {"sa": "a", "sl": "a", "i1": 10, "fl": 0.504})
    _, b = post(server, "sli", {"sa": "a", "sl": "a", "i1": 10, "fl": 0.496})
    assert a["data"] == b["data"]
    assert a["data"]["score"] == f32(1 + 10 + 100 + 0.25 + 0.25)


def test_uncached_model_evaluates_raw_floats(server: LiveServer) -> None:
    """Rounding is a key rule: a model without a DataStore needs no Precision and evaluates the value sent."""
    _, a = post(server, "raw", {"sa": "a", "sl": "a", "i1": 10, "fl": 0.504})
    _, b = post(server, "raw", {"sa": "a", "sl": "a", "i1": 10, "fl": 0.496})
    assert a["data"]["score"] != b["data"]["score"]
    want = expected_keras_lookup(["a"], ["a"], [10], [0.504])
    assert a["data"]["score"] == pytest.approx(float(want["score"][0, 0]), rel=1e-6)


def test_get_and_put_match_post(server: LiveServer) -> None:
    row = {"sa": "c", "sl": "a", "i1": 30, "fl": 2.25}
    _, posted = post(server, "sli", row)
    _, put = post(server, "sli", row, method="PUT")
    with server.client() as client:
        got = client.get("/v1/api/model/sli/eval", params={**row, "cache_key": "ignored"}).json()
    assert posted["data"] == put["data"] == got["data"]


def test_cache_key_is_accepted_and_ignored(server: LiveServer) -> None:
    status, out = post(server, "sli", {"batch_size": 2, "sa": ["a", "b"], "sl": ["a", "a"], "i1": [10, 10],
                                       "fl": [0, 0], "cache_key": ["x", "y"]})
    assert status == 200 and len(out["data"]) == 2


def test_export_op_model(server: LiveServer) -> None:
    status, out = post(server, "ops", {"batch_size": 2, "sa": ["b", "q"], "ik": [2, 7]})
    assert status == 200, out
    assert out["data"] == [{"s1": "two", "sa_id": 2}, {"s1": "", "sa_id": 0}]


def test_model_without_dictionary_omits_dict_hash(server: LiveServer) -> None:
    status, out = post(server, "num", {"x1": 1.5, "x2": 2.0})
    assert status == 200, out
    assert "dictHash" not in out
    assert out["data"] == {"y": 2 * 1.5 + 3 * 2.0 + 1}


def test_go_style_model_with_auxiliary_inputs_and_transformer(server: LiveServer) -> None:
    body = {"batch_size": 2, "sa": ["a", "c"], "sl": ["a", "c"], "note": ["n1", "n2"], "kf": ["k1", "k2"],
            "fl": [0.0, 0.0], "i1": [0, 0]}
    status, out = post(server, "aux", body)
    assert status == 200, out
    # scores: 1+10+0.25 = 11.25 -> "other"; 3+30+0.25 -> "other"
    assert out["data"] == [{"Class": "other", "kf": "k1"}, {"Class": "other", "kf": "k2"}]
    # auxiliary inputs are required like any other
    del body["note"]
    status, out = post(server, "aux", body)
    assert status == 400 and "note" in out["error"]


def test_concurrent_requests_each_get_their_own_rows(server: LiveServer) -> None:
    import concurrent.futures

    def one(i: int) -> tuple[int, float]:
        sa = "abc"[i % 3]
        _, out = post(server, "sli", {"sa": sa, "sl": "a", "i1": 10, "fl": float(i % 7)})
        return i, out["data"]["score"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(40)))
    for i, score in results:
        want = expected_keras_lookup(["abc"[i % 3]], ["a"], [10], [float(i % 7)])
        assert score == pytest.approx(float(want["score"][0, 0]))
