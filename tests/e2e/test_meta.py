"""meta/config, meta/dictionary, /v1/api/config and health over real HTTP, in the Go shapes."""

from __future__ import annotations

import gzip
import time

import numpy as np
import orjson
from live_server import LiveServer

from mly._native.fnv import combine_layer_hashes, layer_hash_ints, layer_hash_strings


def test_meta_config_shape(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get("/v1/api/model/sli/meta/config")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    meta = response.json()
    assert list(meta)[:12] == ["Connections", "ID", "Cache", "Connection", "Namespace", "Dataset",
                               "TimeToLiveMs", "RetryTimeMs", "Storable", "Fields", "Inputs", "KeyFields"]
    assert meta["Connections"] is None
    assert meta["ID"] == "mem" and meta["Cache"]["SizeMb"] == 8
    assert meta["TimeToLiveMs"] == 900000 and meta["RetryTimeMs"] == 5000
    assert meta["Inputs"] == [
        {"Name": "fl", "Index": 0, "DataType": "float", "Precision": 2},
        {"Name": "i1", "Index": 1, "DataType": "int64"},
        {"Name": "sa", "Index": 2, "DataType": "string"},
        {"Name": "sl", "Index": 3, "DataType": "string"},
    ]
    assert meta["KeyFields"] == ["fl", "i1", "sa", "sl"]
    assert meta["Outputs"] == [
        {"Name": "label_id", "Index": 0, "DataType": "int64"},
        {"Name": "score", "Index": 1, "DataType": "float32"},
        {"Name": "vec", "Index": 2, "DataType": "float32"},
    ]
    assert meta["Fields"] == [{"Name": "label_id", "DataType": "int64"}, {"Name": "score", "DataType": "float32"},
                              {"Name": "vec", "DataType": "float32"}]


def test_meta_config_without_datastore_is_go_zero_value(server: LiveServer) -> None:
    with server.client() as client:
        meta = client.get("/v1/api/model/ops/meta/config").json()
    assert meta["Connections"] is None and meta["ID"] == "" and meta["Cache"] is None
    assert meta["Fields"] is None and meta["Storable"] == ""
    assert "KeyFields" not in meta  # no caching, none configured


def test_meta_config_auxiliary_inputs(server: LiveServer) -> None:
    with server.client() as client:
        meta = client.get("/v1/api/model/aux/meta/config").json()
    assert [(f["Name"], f.get("Auxiliary", False), f.get("Wildcard", False)) for f in meta["Inputs"]] == [
        ("sa", False, False), ("sl", False, False), ("note", True, False), ("kf", True, True),
        ("fl", False, False), ("i1", False, False),
    ]
    assert meta["KeyFields"] == ["sa", "sl", "kf"]


def test_meta_dictionary_is_gzip_json_with_its_hashes(server: LiveServer) -> None:
    # Always gzip, whatever Accept-Encoding says (as Go); read the raw bytes to prove it.
    with server.client() as client, client.stream(
        "GET", "/v1/api/model/sli/meta/dictionary", headers={"Accept-Encoding": "identity"}
    ) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    data = orjson.loads(gzip.decompress(raw))
    layers = {layer["Name"]: layer for layer in data["Layers"]}
    assert list(layers) == ["i1", "sa", "sl"]  # meta input order
    assert layers["sa"]["Strings"] == layers["sl"]["Strings"] == ["a", "b", "c"]
    assert layers["sa"]["Ints"] is None
    assert layers["sa"]["Hash"] == layer_hash_strings("sa", ["a", "b", "c"])
    assert layers["sl"]["Hash"] == layer_hash_strings("sl", ["a", "b", "c"])
    assert layers["i1"]["Ints"] == [10, 20, 30] and layers["i1"]["Strings"] is None
    assert layers["i1"]["Hash"] == layer_hash_ints("i1", np.array([10, 20, 30], dtype=np.int64))
    total = combine_layer_hashes(np.array([layers[n]["Hash"] for n in ("i1", "sa", "sl")], dtype=np.int64))
    assert data["Hash"] == total == server.registry.get("sli").current.dict_hash


def test_meta_dictionary_of_export_op_model(server: LiveServer) -> None:
    with server.client() as client:
        data = client.get("/v1/api/model/ops/meta/dictionary").json()
    layers = {layer["Name"]: layer for layer in data["Layers"]}
    assert layers["sa"]["Strings"] == ["a", "b", "c"]
    assert layers["sa"]["Hash"] == layer_hash_strings("sa", ["a", "b", "c"])
    assert layers["ik"]["Ints"] == [1, 2, 3]


def test_meta_dictionary_disabled_is_gzip_null(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get("/v1/api/model/num/meta/dictionary")
    assert response.status_code == 200 and response.json() is None  # httpx un-gzips


def test_health_and_server_config(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/v1/api/health").json() == {"sli": 1, "ops": 1, "num": 1, "raw": 1, "aux": 1}
        config = client.get("/v1/api/config").json()
        assert client.get("/v1/api/config/").json() == config
    models = {m["ID"]: m for m in config["Models"]}
    assert models["sli"]["DictMeta"]["Hash"] == server.registry.get("sli").current.dict_hash
    assert models["sli"]["DictMeta"]["Error"] == ""
    assert models["sli"]["Modified"]["Max"] is not None
    assert config["Endpoint"]["BufferSize"] == 16384
    assert models["num"]["DictMeta"]["Hash"] == 0


def test_meta_stats(server: LiveServer) -> None:
    with server.client() as client:
        stats = client.get("/v1/api/model/sli/meta/stats").json()
        uncached = client.get("/v1/api/model/raw/meta/stats").json()
    # Go's batcher stats shape; ``timeout`` is the current wait in nanoseconds; then mly's row outcomes
    # (every model) and its datastore's per-tier lookups (a cached model).
    assert set(stats) == {"activeEvaluators", "batchQueueLen", "shedding", "timeout", "rows", "cache"}
    assert set(uncached) == {"activeEvaluators", "batchQueueLen", "shedding", "timeout", "rows"}
    assert stats["shedding"] is False and stats["activeEvaluators"] >= 0


def test_meta_stats_says_where_rows_came_from(server: LiveServer) -> None:
    """A batch of one new row and one row seen before: half its rows from the memory tier."""
    seen = {"sa": "a", "sl": "b", "i1": 10, "fl": 1.25}
    new = {"sa": "b", "sl": "a", "i1": 20, "fl": round(2 + time.time() % 1000, 2)}  # not asked before in this session
    batch = {"batch_size": 2, **{name: [seen[name], new[name]] for name in seen}}
    with server.client() as client:
        assert client.post("/v1/api/model/sli/eval", json=seen).status_code == 200
        before = client.get("/v1/api/model/sli/meta/stats").json()
        assert client.post("/v1/api/model/sli/eval", json=batch).status_code == 200
        after = client.get("/v1/api/model/sli/meta/stats").json()
    rows = {k: after["rows"][k] - before["rows"][k] for k in after["rows"] if k != "rowHitRate"}
    assert rows == {"requests": 1, "rows": 2, "cachedRows": 1, "memoRows": 0, "uncachedRows": 1,
                    "requestsAllCached": 0, "requestsPartlyCached": 1, "requestsNoneCached": 0,
                    "requestsFromMemo": 0}
    cache = {k: after["cache"][k] - before["cache"][k] for k in ("lookups", "hitsMemory", "hitsL1", "misses")}
    assert cache == {"lookups": 2, "hitsMemory": 1, "hitsL1": 0, "misses": 1}
    assert after["cache"]["datastore"] == "mem"
    assert after["rows"]["rowHitRate"] == round(after["rows"]["cachedRows"] / after["rows"]["rows"], 6)
