"""A request waiting on another request's row must not inherit that request's failure."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from live_server import LiveServer
from reloading import wait_until


@pytest.fixture(scope="module")
def checked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from model_builders import build_checked_model

    model = build_checked_model(str(tmp_path_factory.mktemp("checked") / "model"))
    config = {
        "Endpoint": {"InferenceThreads": 1},  # one thread, which the test can keep busy
        "Models": [{"ID": "chk", "URL": model, "DataStore": "m", "Inputs": [{"Name": "x", "Precision": 2}]}],
        "Datastores": [{"ID": "m", "Cache": {"SizeMb": 1}}],
    }
    server = LiveServer(config, tmp_path_factory.mktemp("checked-server")).start()
    yield server
    server.stop()


def post(server: LiveServer, body: dict) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.post("/v1/api/model/chk/eval", json=body)


def owner_then_waiter(server: LiveServer, a_body: dict, b_body: dict) -> dict[str, httpx.Response]:
    """A's answers and B's, A owning both its rows and B waiting on one of them before A runs.

    A's batch is held for real until B waits: the one inference thread is busy with other
    work, as under load."""
    flight = server.registry.get("chk").current.flight
    answers: dict[str, httpx.Response] = {}

    def send(name: str, body: dict) -> None:
        answers[name] = post(server, body)

    gate = threading.Event()
    busy = server.registry.executor.submit(gate.wait, 60)
    a = threading.Thread(target=send, args=("a", a_body))
    a.start()
    wait_until(lambda: len(flight) == 2, "A to own both rows", timeout_s=30)
    b = threading.Thread(target=send, args=("b", b_body))
    b.start()
    # B waits on A's row: the key now holds a future (private state, read only to order the test).
    wait_until(lambda: any(f is not None for f in flight._inflight.values()), "B to wait on A", timeout_s=30)
    gate.set()
    busy.result(timeout=30)
    a.join(timeout=30)
    b.join(timeout=30)
    return answers


def test_a_waiter_evaluates_its_own_row_when_the_owner_failed(checked_server: LiveServer) -> None:
    """A's batch [1.0, -1.0] fails in TensorFlow (x < 0); B asked for 1.0 alone while A
    owned that row. B alone is a 200, so B gets a 200."""
    answers = owner_then_waiter(checked_server, {"batch_size": 2, "x": [1.0, -1.0]}, {"x": 1.0})
    assert answers["a"].status_code == 500 and "x must be >= 0" in answers["a"].json()["error"]
    assert answers["b"].status_code == 200, answers["b"].text
    assert answers["b"].json()["data"] == {"y": 2.0}


def test_a_partly_cached_batch_waiting_on_a_failed_owner_evaluates_that_row_itself(
        checked_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """As above, with B a batch read from its bytes (``body_rows``): 2.0 is cached, B owns 3.0 and
    waits on A's 5.0. When A fails, B evaluates 5.0 from the columns of the rows it read, where
    that row is second, not third as in the body. (Values of their own: the server's cache
    outlives each test.)"""
    import mly.http.fast as fast

    parsed: list[bytes] = []
    parse_body = fast.parse_body
    monkeypatch.setattr(fast, "parse_body", lambda raw, **kw: parsed.append(bytes(raw)) or parse_body(raw, **kw))
    answers = {"cached": post(checked_server, {"x": 2.0})}
    answers.update(owner_then_waiter(checked_server, {"batch_size": 2, "x": [5.0, -2.0]},
                                     {"batch_size": 3, "x": [2.0, 3.0, 5.0]}))
    assert answers["cached"].status_code == 200
    assert answers["a"].status_code == 500 and "x must be >= 0" in answers["a"].json()["error"]
    assert answers["b"].status_code == 200, answers["b"].text
    assert answers["b"].json()["data"] == [answers["cached"].json()["data"], {"y": 6.0}, {"y": 10.0}]
    assert not [raw for raw in parsed if b'"batch_size": 3' in raw], "B was read from its bytes"
