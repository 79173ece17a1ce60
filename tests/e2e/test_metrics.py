"""gmetric JSON under /v1/api/metric/: shapes as Go writes them, counts that move with known traffic."""

from __future__ import annotations

import httpx
import orjson
from live_server import LiveServer

ROW = {"sa": "a", "sl": "b", "i1": 10, "fl": 0.25}
OPERATION_KEYS = ["Location", "Name", "Description", "Count", "Custom", "Counters", "TimeTaken", "Max", "Min",
                  "Avg", "Recent", "Unit", "RecentUnit"]


def operation(client: httpx.Client, name: str) -> dict:
    response = client.get(f"/v1/api/metric/operation/{name}")
    assert response.status_code == 200
    return response.json()


def counter(op: dict, value: str) -> int:
    return next(c.get("Count", 0) for c in op["Counters"] if c["Value"] == value)


def test_perf_counts_every_eval_request_by_outcome(server: LiveServer) -> None:
    with server.client() as client:
        before = operation(client, "sliPerf")
        before_eval = operation(client, "sliEval")
        before_overhead = operation(client, "sliHTTPOverhead")
        unique = {**ROW, "fl": 0.77}  # a key no other test uses: one TensorFlow call, then hits
        for _ in range(3):
            assert client.post("/v1/api/model/sli/eval", content=orjson.dumps(unique)).status_code == 200
        assert client.post("/v1/api/model/sli/eval", content=b'{"sa": 1}').status_code == 400
        assert client.post("/v1/api/model/sli/eval", content=b"{").status_code == 400
        after = operation(client, "sliPerf")
        after_eval = operation(client, "sliEval")
        overhead = operation(client, "sliHTTPOverhead")
    assert after.get("Count", 0) - before.get("Count", 0) == 5
    assert counter(after, "eval") - counter(before, "eval") == 3
    assert counter(after, "invalid") - counter(before, "invalid") == 2
    # The cache answered two of the three: Perf.Count - Eval.Count shows what it saved.
    assert after_eval.get("Count", 0) - before_eval.get("Count", 0) == 1
    assert counter(overhead, "unmarshalError") - counter(before_overhead, "unmarshalError") == 1  # "{"
    assert overhead["Custom"]["Top"] and all(set(top) == {"Error", "Count"} for top in overhead["Custom"]["Top"])


def test_operation_shape_is_gos(server: LiveServer) -> None:
    with server.client() as client:
        client.post("/v1/api/model/sli/eval", content=orjson.dumps(ROW))
        op = operation(client, "sliPerf")
        assert list(op) == OPERATION_KEYS
        assert op["Location"] and op["Name"] == "sliPerf" and op["Unit"] == "1µs" and op["RecentUnit"] == "1m0s"
        assert [c["Value"] for c in op["Counters"]] == ["error", "eval", "pending", "timeout", "invalid", "canceled",
                                                       "deadlineExceeded", "overloaded"]
        eval_counter = next(c for c in op["Counters"] if c["Value"] == "eval")
        assert list(eval_counter) == ["Value", "Count", "Custom", "Pct"]
        assert list(next(c for c in op["Counters"] if c["Value"] == "pending")) == ["Value", "Custom"]
        assert len(op["Recent"]) == 2 and "Location" not in op["Recent"][0]
        assert op["Avg"] == op["TimeTaken"] // op["Count"] and op["Min"] <= op["Avg"] <= op["Max"]
        assert client.get("/v1/api/metric/operation/sliPerf/cumulative/count").json() == op["Count"]
        assert client.get("/v1/api/metric/operation/sliPerf/cumulative/eval").json() == eval_counter["Count"]
        assert client.get("/v1/api/metric/operation/sliPerf/cumulative/eval.pct").json() == eval_counter["Pct"]
        assert client.get("/v1/api/metric/operation/sliPerf/recent/count").json() >= 1
        assert client.get("/v1/api/metric/operation/sliPerf/recent").json()["Count"] >= 1
        assert client.get("/v1/api/metric/operation/nope").json() is None
        assert client.get("/v1/api/metric/operation/nope/cumulative/count").json() is None
        assert client.get("/v1/api/metric/counters").json() == []


def test_operations_list_in_gos_order(server: LiveServer) -> None:
    with server.client() as client:
        client.get("/v1/api/model/sli/meta/config")
        client.get("/v1/api/model/sli/meta/dictionary")
        names = [op["Name"] for op in client.get("/v1/api/metric/operations").json()]
        meta = operation(client, "sliMetaHandler")
    sli = [n for n in names if n.startswith("sli")]
    assert sli == ["sliPerf", "sliEval", "sliReload", "sliHTTPOverhead", "sliHTTPHandler", "sliSemaphore",
                   "sliDispatcher", "sliBatcherQueue", "sliMetaHandler", "sliDictMeta", "sliCfgMeta"]
    assert names[-4:] == ["mem", "memCacheW", "auxmem", "auxmemCacheW"]  # datastores in config order
    assert counter(meta, "cfg") >= 1 and counter(meta, "dict") >= 1


def test_datastore_and_dispatcher_counts(server: LiveServer) -> None:
    with server.client() as client:
        before = operation(client, "mem")
        row = {**ROW, "fl": 0.61}
        client.post("/v1/api/model/sli/eval", content=orjson.dumps(row))  # miss, then written
        client.post("/v1/api/model/sli/eval", content=orjson.dumps(row))  # hit in memory
        after = operation(client, "mem")
        dispatcher = operation(client, "sliDispatcher")
    assert counter(after, "localHasValue") - counter(before, "localHasValue") >= 1
    assert counter(after, "noKey") - counter(before, "noKey") >= 1
    assert dispatcher["Custom"]["Batches"] >= 1 and dispatcher["Custom"]["Elements"] >= dispatcher["Custom"]["Batches"]


def test_ready(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get("/v1/api/ready")
    assert response.status_code == 200 and response.json() == {"ready": True}
