"""The server reads its own cache (docs/differences-from-go.md #1): repeated predictions never reach TensorFlow."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import orjson
import pytest
from live_server import LiveServer
from model_builders import expected_keras_lookup


def post(server: LiveServer, body: object, model: str = "sli") -> dict:
    with server.client() as client:
        response = client.post(f"/v1/api/model/{model}/eval", content=orjson.dumps(body))
    assert response.status_code == 200, response.text
    return response.json()


def rows_evaluated(server: LiveServer, model: str = "sli") -> int:
    return server.registry.get(model).rows_evaluated


def test_repeat_is_a_hit_with_identical_body(server: LiveServer) -> None:
    row = {"sa": "a", "sl": "b", "i1": 20, "fl": 3.01}
    before = rows_evaluated(server)
    first = post(server, row)
    assert rows_evaluated(server) == before + 1
    hits = server.registry.caches["mem"].counters.hits_memory
    second = post(server, row)
    assert rows_evaluated(server) == before + 1  # no TensorFlow call
    assert server.registry.caches["mem"].counters.hits_memory == hits + 1
    assert second["data"] == first["data"] and second["dictHash"] == first["dictHash"]
    want = expected_keras_lookup(["a"], ["b"], [20], [3.01])
    assert second["data"]["score"] == pytest.approx(float(want["score"][0, 0]))


def test_out_of_vocabulary_values_share_one_entry(server: LiveServer) -> None:
    before = rows_evaluated(server)
    a = post(server, {"sa": "never-seen-1", "sl": "c", "i1": 11, "fl": 3.02})
    b = post(server, {"sa": "never-seen-2", "sl": "c", "i1": 12, "fl": 3.02})  # both [UNK], both int OOV
    assert rows_evaluated(server) == before + 1
    assert a["data"] == b["data"]


def test_precision_rounding_shares_one_entry(server: LiveServer) -> None:
    before = rows_evaluated(server)
    post(server, {"sa": "b", "sl": "b", "i1": 30, "fl": 3.034})
    post(server, {"sa": "b", "sl": "b", "i1": 30, "fl": 3.026})
    assert rows_evaluated(server) == before + 1
    post(server, {"sa": "b", "sl": "b", "i1": 30, "fl": 3.036})  # 3.04: a new key
    assert rows_evaluated(server) == before + 2


def test_batch_evaluates_only_the_missing_rows_in_order(server: LiveServer) -> None:
    post(server, {"sa": "a", "sl": "a", "i1": 10, "fl": 4.0})
    post(server, {"sa": "c", "sl": "c", "i1": 30, "fl": 4.0})
    before = rows_evaluated(server)
    body = {"batch_size": 4, "sa": ["a", "b", "c", "b"], "sl": ["a", "b", "c", "b"], "i1": [10, 20, 30, 20],
            "fl": [4.0]}
    out = post(server, body)
    assert rows_evaluated(server) == before + 1  # row 1 and its duplicate row 3: one evaluation
    want = expected_keras_lookup(["a", "b", "c", "b"], ["a", "b", "c", "b"], [10, 20, 30, 20], [4.0] * 4)
    assert [r["score"] for r in out["data"]] == pytest.approx(want["score"][:, 0].tolist())
    assert [x for r in out["data"] for x in r["vec"]] == pytest.approx(want["vec"].ravel().tolist())


def test_concurrent_misses_on_one_key_evaluate_once(server: LiveServer) -> None:
    row = {"sa": "c", "sl": "a", "i1": 20, "fl": 5.55}
    before = rows_evaluated(server)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: post(server, row), range(32)))
    assert rows_evaluated(server) == before + 1
    assert all(r["data"] == results[0]["data"] for r in results)


def test_get_uses_the_same_cache(server: LiveServer) -> None:
    row = {"sa": "b", "sl": "c", "i1": 10, "fl": 6.5}
    post(server, row)
    before = rows_evaluated(server)
    with server.client() as client:
        got = client.get("/v1/api/model/sli/eval", params=row).json()
    assert rows_evaluated(server) == before
    assert got["status"] == "ok"


def test_client_cache_key_cannot_poison_the_cache(server: LiveServer) -> None:
    # A client claims row B's key for row A; the server ignores cache_key and keys rows itself.
    a = post(server, {"sa": "a", "sl": "a", "i1": 10, "fl": 7.0, "cache_key": "7.00/20/b/b"})
    b = post(server, {"sa": "b", "sl": "b", "i1": 20, "fl": 7.0})
    assert a["data"] != b["data"]


def test_models_without_cache_always_evaluate(server: LiveServer) -> None:
    before = rows_evaluated(server, "ops")
    for _ in range(2):
        post(server, {"sa": "a", "ik": 1}, model="ops")
    assert rows_evaluated(server, "ops") == before + 2


def test_cached_row_with_a_wrong_typed_auxiliary_input_is_still_rejected(server: LiveServer) -> None:
    row = {"sa": "a", "sl": "b", "note": "n", "kf": "k", "fl": 0.5, "i1": 10}
    assert post(server, row, model="aux")["status"] == "ok"
    assert post(server, row, model="aux")["status"] == "ok"  # now a cache hit
    with server.client() as client:
        response = client.post("/v1/api/model/aux/eval", content=orjson.dumps({**row, "note": 5}))
    assert response.status_code == 400 and "note" in response.json()["error"]


@pytest.fixture(scope="module")
def boost_server(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``boost``: an auxiliary float32 input, in no key."""
    config = {"Models": [{"ID": "boost", "URL": model_dirs["keras"], "DataStore": "m", "Inputs": [
        {"Name": "fl", "Precision": 1}, {"Name": "boost", "DataType": "float32", "Auxiliary": True}]}],
        "Datastores": [{"ID": "m", "Cache": {"SizeMb": 2}}]}
    live = LiveServer(config, tmp_path_factory.mktemp("boost")).start()
    yield live
    live.stop()


@pytest.mark.parametrize("value", [1e39, -3.5e38, 2.0**128 - 2.0**103])
def test_cached_row_with_an_auxiliary_float32_past_its_range_is_still_rejected(
    boost_server: LiveServer, value: float
) -> None:
    row = {"sa": "a", "sl": "b", "fl": 0.5, "i1": 10, "boost": 0.5}
    with boost_server.client() as client:
        assert client.post("/v1/api/model/boost/eval", content=orjson.dumps(row)).status_code == 200
        hit = client.post("/v1/api/model/boost/eval", content=orjson.dumps({**row, "boost": 3.4028235e38}))
        assert hit.status_code == 200  # float32's largest value: fine, and a hit
        for body in ({**row, "boost": value}, {**{k: [v] for k, v in row.items()}, "boost": [value], "batch_size": 1}):
            response = client.post("/v1/api/model/boost/eval", content=orjson.dumps(body))
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"].startswith("boost") and "out of range for float32" in response.json()["error"]


def test_batch_of_hits_is_answered_from_the_json_and_one_new_row_is_the_only_miss(server: LiveServer) -> None:
    batch = {"batch_size": 4, "sa": ["a", "b", "c", "zz"], "sl": ["b"], "i1": [10, 20, 30, 40], "fl": [4.01]}
    before = rows_evaluated(server)
    first = post(server, batch)
    assert rows_evaluated(server) == before + 4
    hits = server.registry.caches["mem"].counters.hits_memory
    again = post(server, batch)  # all four keyed straight from the JSON lists: no encoding, no TensorFlow
    assert rows_evaluated(server) == before + 4
    assert server.registry.caches["mem"].counters.hits_memory == hits + 4
    assert again["data"] == first["data"]
    changed = {**batch, "sa": ["a", "b", "c", "a"]}  # one row differs: the other three are still hits
    third = post(server, changed)
    assert rows_evaluated(server) == before + 5
    assert third["data"][:3] == first["data"][:3]
    singles = [post(server, {"sa": sa, "sl": "b", "i1": i1, "fl": 4.01})["data"]
               for sa, i1 in zip(batch["sa"], batch["i1"])]
    assert singles == first["data"] and rows_evaluated(server) == before + 5  # batch and single keys agree
