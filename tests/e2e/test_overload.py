"""Overload on a real server with a slow model: 429 at once when the queue is full,
and a prompt error for a request whose deadline passes while it waits."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import httpx
import pytest
from live_server import LiveServer
from model_builders import build_slow_model


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    model = build_slow_model(str(tmp_path_factory.mktemp("slow") / "model"))
    config = {
        "Endpoint": {"WriteTimeoutMs": 3000, "InferenceThreads": 1},
        "Models": [
            # Batching off, one call at a time, one waiting batch: the third concurrent request is shed.
            {"ID": "shed", "URL": model, "UseDict": False,
             "Batch": {"BatchWait": -1, "MaxEvaluatorConcurrency": 1, "MaxQueuedBatches": 1}},
        ],
    }
    live = LiveServer(config, tmp_path_factory.mktemp("slow-server")).start()
    yield live
    live.stop()


def test_full_queue_is_429_at_once(slow_server: LiveServer) -> None:
    with slow_server.client() as client:
        assert client.post("/v1/api/model/shed/eval", json={"x": 1.0}).status_code == 200  # warm

    def send(i: int) -> tuple[int, float, dict]:
        with httpx.Client(base_url=slow_server.url, timeout=30) as client:
            response = client.post("/v1/api/model/shed/eval", json={"x": float(i)})
        return response.status_code, time.monotonic(), response.json()

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(send, range(12)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= 2, statuses  # one running, one queued at least
    shed = [(elapsed, body) for status, elapsed, body in results if status == 429]
    assert shed, statuses
    for _, body in shed:
        assert body["status"] == "error" and "overloaded" in body["error"].lower()
    # Shed requests do not wait for the queue: all of them are answered before the
    # last accepted request, which needs at least two model calls.
    last_ok = max(done for status, done, _ in results if status == 200)
    assert max(done for done, _ in shed) < last_ok
    assert set(statuses) <= {200, 429}
    with slow_server.client() as client:  # every 429 is counted as "overloaded"
        perf = client.get("/v1/api/metric/operation/shedPerf").json()
    assert next(c["Count"] for c in perf["Counters"] if c["Value"] == "overloaded") == len(shed)


@pytest.fixture(scope="module")
def deadline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    model = build_slow_model(str(tmp_path_factory.mktemp("slow2") / "model"))
    config = {
        "Endpoint": {"WriteTimeoutMs": 150, "InferenceThreads": 1},
        "Models": [{"ID": "late", "URL": model, "UseDict": False,
                    "Batch": {"BatchWait": -1, "MaxEvaluatorConcurrency": 1}}],
    }
    live = LiveServer(config, tmp_path_factory.mktemp("deadline-server")).start()
    yield live
    live.stop()


def test_deadline_while_queued_is_answered_and_not_evaluated(deadline_server: LiveServer) -> None:
    batcher = deadline_server.registry.get("late").current.batcher
    rows_before = batcher.counters.rows

    def send(i: int) -> tuple[int, dict]:
        with httpx.Client(base_url=deadline_server.url, timeout=30) as client:
            response = client.post("/v1/api/model/late/eval", json={"x": float(i)})
        return response.status_code, response.json()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, range(16)))
    late = [body for status, body in results if status == 500]
    assert late, [status for status, _ in results]
    assert all("deadline" in body["error"] or "did not finish" in body["error"] for body in late)
    assert {status for status, _ in results} <= {200, 500}
    assert batcher.counters.deadline_exceeded >= 1
    # Requests that expired while queued were never evaluated.
    assert batcher.counters.rows - rows_before < 16


def test_bad_row_fails_only_its_own_request(tmp_path_factory: pytest.TempPathFactory) -> None:
    from model_builders import build_checked_model

    model = build_checked_model(str(tmp_path_factory.mktemp("checked") / "model"))
    config = {"Models": [{"ID": "chk", "URL": model, "UseDict": False,
                          "Batch": {"BatchWait": 50_000_000, "MaxBatchSize": 8}}]}  # hold 50 ms: merge all 8
    server = LiveServer(config, tmp_path_factory.mktemp("checked-server")).start()
    try:
        batcher = server.registry.get("chk").current.batcher

        def send(x: float) -> tuple[int, dict]:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                response = client.post("/v1/api/model/chk/eval", json={"x": x})
            return response.status_code, response.json()

        values = [1.0, 2.0, -1.0, 3.0, 4.0, 5.0, 6.0, 7.0]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, values))
        for x, (status, body) in zip(values, results):
            if x < 0:
                assert status == 500 and "x must be >= 0" in body["error"], body
            else:
                assert status == 200 and body["data"] == {"y": 2 * x}, body
        assert batcher.counters.failed_batches >= 1  # a merged call failed and was split
    finally:
        server.stop()
