"""Two servers on one Redis Cluster: rows computed by one are cache hits on the other."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from live_server import LiveServer


def fleet_config(model_dirs: dict[str, str], cluster: Any) -> dict[str, Any]:
    connection = cluster.connection(timeout_ms=500, seeds=2)
    return {
        "Models": [{"ID": "sli", "URL": model_dirs["keras"], "DataStore": "shared",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [{"ID": "rc", "Kind": "redis", "Cluster": True, "Hostnames": connection.hostnames,
                         "Timeout": {"Total": 500}}],
        "Datastores": [{"ID": "shared", "Cache": {"SizeMb": 4}, "Connection": "rc",
                        "Namespace": "fleet", "Dataset": "sli"}],
    }


def batch(start: int, n: int) -> dict[str, Any]:
    return {"batch_size": n, "sa": ["abc"[k % 3] for k in range(start, start + n)],
            "sl": ["b"], "i1": [10], "fl": [k / 100 for k in range(start, start + n)]}


def test_rows_computed_on_one_server_are_hits_on_the_other(
    model_dirs: dict[str, str], redis_cluster: Any, tmp_path: Path
) -> None:
    redis_cluster.wait_ok()
    redis_cluster.flush()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = LiveServer(fleet_config(model_dirs, redis_cluster), tmp_path / "a").start()
    b = LiveServer(fleet_config(model_dirs, redis_cluster), tmp_path / "b").start()
    try:
        bodies = [batch(start, 100) for start in range(0, 1000, 100)]
        with httpx.Client(base_url=a.url, timeout=30) as client:
            answers_a = [client.post("/v1/api/model/sli/eval", json=body).json()["data"] for body in bodies]
        counters = a.registry.caches["shared"].counters
        deadline = time.monotonic() + 20
        while counters.writes < 1000:  # written behind the answers
            assert time.monotonic() < deadline, f"only {counters.writes} rows reached the cluster"
            time.sleep(0.05)
        service_b = b.registry.get("sli")
        before = service_b.rows_evaluated
        with httpx.Client(base_url=b.url, timeout=30) as client:
            answers_b = [client.post("/v1/api/model/sli/eval", json=body).json()["data"] for body in bodies]
        assert answers_b == answers_a
        assert service_b.rows_evaluated - before <= 50  # at most 5% evaluated again
        assert b.registry.caches["shared"].counters.hits_l1 >= 950
    finally:
        a.stop()
        b.stop()
