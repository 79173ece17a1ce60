"""Graceful shutdown of a real `mly-fast serve`: SIGTERM with requests in flight and rows waiting to be
written to a real Redis; every request is answered, every row is written, the exit status is 0."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from model_builders import build_slow_model
from redis_server import RedisServer
from serve_process import ServeProcess


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield build_slow_model(str(tmp_path_factory.mktemp("slow-shutdown") / "model"))


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_finishes_requests_and_flushes_writes(
    slow_model: str, redis_servers: dict[str, RedisServer], tmp_path: Path, stop_signal: signal.Signals
) -> None:
    import redis

    l1 = redis_servers["l1"]
    dataset = f"shutdown-{stop_signal.name}"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "Endpoint": {"WriteTimeoutMs": 20000, "InferenceThreads": 1},
        "Models": [{"ID": "slow", "URL": slow_model, "DataStore": "r", "Inputs": [{"Name": "x", "Precision": 3}],
                    # One call at a time, so most requests are still queued when the signal arrives.
                    "Batch": {"BatchWait": -1, "MaxEvaluatorConcurrency": 1, "MaxQueuedBatches": 100}}],
        "Connections": [{"ID": "redisL1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": l1.port}],
        "Datastores": [{"ID": "r", "Connection": "redisL1", "Dataset": dataset, "TimeToLiveMs": 600000}],
    }))
    with ServeProcess(config) as served:
        rows = 12

        def predict(i: int) -> int:
            with served.client(timeout_s=60) as client:
                return client.post("/v1/api/model/slow/eval", json={"x": i / 10}).status_code

        def bodies_read() -> int:
            with served.client() as client:
                return int(client.get("/v1/api/metric/operation/slowHTTPOverhead/cumulative/count").json())

        with concurrent.futures.ThreadPoolExecutor(rows) as pool:
            futures = [pool.submit(predict, i) for i in range(rows)]
            # Signal once the server has read every request (a request still in the kernel's buffer
            # when the server stops is not in flight yet: its connection is closed unanswered).
            deadline = time.monotonic() + 60
            while bodies_read() < rows:
                assert time.monotonic() < deadline, "the requests never reached the server"
                time.sleep(0.02)
            assert not all(f.done() for f in futures), "the model is too fast to leave requests in flight"
            served.send_signal(stop_signal)
            statuses = [f.result() for f in futures]
        assert statuses == [200] * rows
        assert served.stop(stop_signal) == 0, served.output()
    with redis.Redis(port=l1.port) as r:
        assert len(r.keys(f"*{dataset}*")) == rows  # every row was written behind before the exit
