"""Hot reload on a real server: zero failed requests under load, no stale cache entries,
a corrupt version keeps the old one serving with health 0 until a good one arrives.

Versions are deployed the way a careful operator does it locally: each version
in its own folder, and the served path a symlink switched atomically.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from live_server import LiveServer
from model_builders import build_changed_vocab_model, build_reweighted_model, expected_keras_lookup
from reloading import point, wait_until

POLL_S = 0.2


@pytest.fixture(scope="module")
def versions(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("versions")
    v1 = root / "v1"
    shutil.copytree(model_dirs["keras"], v1)
    v2 = Path(build_changed_vocab_model(str(root / "v2")))
    retrained = root / "v1-retrained"  # same files, new mtimes: a new version with the same vocabulary
    shutil.copytree(v1, retrained)
    for path in retrained.rglob("*"):
        os.utime(path, (time.time() + 5, time.time() + 5))
    reweighted = Path(build_reweighted_model(str(root / "reweighted")))  # same vocabulary, new answers
    broken = root / "broken"
    shutil.copytree(v1, broken)
    (broken / "saved_model.pb").write_bytes(b"this is not a protobuf")
    return {"v1": v1, "v2": v2, "retrained": retrained, "reweighted": reweighted, "broken": broken,
            "link": root / "current"}


@pytest.fixture
def reloading_server(versions: dict[str, Path], tmp_path: Path) -> Iterator[LiveServer]:
    point(versions["link"], versions["v1"])
    config = {
        "Endpoint": {"WriteTimeoutMs": 1000},  # old versions retire 1 s after the deadline: 2 s
        "Models": [{"ID": "r", "URL": str(versions["link"]), "DataStore": "mem", "ReloadIntervalSec": POLL_S,
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}],
    }
    live = LiveServer(config, tmp_path).start()
    yield live
    live.stop()


def post(client: httpx.Client, row: dict) -> httpx.Response:
    return client.post("/v1/api/model/r/eval", content=orjson.dumps(row))


class Load:
    """Continuous requests from a few threads; every status is recorded."""

    def __init__(self, server: LiveServer, threads: int = 4) -> None:
        self.server = server
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, n: int) -> None:
        with self.server.client() as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                row = {"sa": "abcd"[i % 4], "sl": "a", "i1": 10, "fl": float((n * 1000 + i) % 50)}
                try:
                    response = post(client, row)
                    self.statuses.append(response.status_code)
                    if response.status_code != 200:
                        self.errors.append(response.text)
                except httpx.HTTPError as exc:
                    self.statuses.append(0)
                    self.errors.append(repr(exc))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def test_reload_under_load_drops_nothing_and_serves_nothing_stale(
    reloading_server: LiveServer, versions: dict[str, Path]
) -> None:
    server = reloading_server
    service = server.registry.get("r")
    oov = {"sa": "zz", "sl": "b", "i1": 20, "fl": 1.0}  # "zz" is [UNK] in both versions: same key
    new_word = {"sa": "d", "sl": "b", "i1": 20, "fl": 1.0}  # [UNK] in v1, in the vocabulary in v2
    with server.client() as client:
        before = post(client, oov).json()
        assert post(client, new_word).json()["data"] == before["data"]  # both [UNK] under v1
        with Load(server) as load:
            time.sleep(0.5)
            point(versions["link"], versions["v2"])
            wait_until(lambda: service.reloads >= 1, "the reload")
            time.sleep(0.5)
        assert load.statuses and all(s == 200 for s in load.statuses), load.errors[:5]
        assert len(load.statuses) > 20

        evaluated = service.rows_evaluated
        after = post(client, oov).json()
        # Same key text, new dictionary: the old entry is stale and must be recomputed.
        assert service.rows_evaluated == evaluated + 1
        assert after["dictHash"] != before["dictHash"]
        assert after["dictHash"] == service.current.dict_hash
        d = post(client, new_word).json()
    want = expected_keras_lookup(["d"], ["b"], [20], [1.0], sa_vocab=("a", "b", "c", "d"))
    assert d["data"]["score"] == pytest.approx(float(want["score"][0, 0]))
    assert d["data"] != before["data"]
    with server.client() as client:
        assert client.get("/v1/api/health").json() == {"r": 1}


def test_corrupt_version_keeps_old_one_serving(reloading_server: LiveServer, versions: dict[str, Path]) -> None:
    server = reloading_server
    service = server.registry.get("r")
    row = {"sa": "a", "sl": "a", "i1": 10, "fl": 0.5}
    with server.client() as client:
        good = post(client, row).json()
        failures = service.reload_failures
        point(versions["link"], versions["broken"])
        wait_until(lambda: service.reload_failures > failures, "the failed reload")
        assert client.get("/v1/api/health").json() == {"r": 0}
        config = client.get("/v1/api/config").json()
        assert "r" in config["Models"][0]["DictMeta"]["Error"]
        served = post(client, row)
        assert served.status_code == 200 and served.json()["data"] == good["data"]
        assert served.json()["dictHash"] == good["dictHash"]
        # Retried at every poll while the broken version stays.
        seen = service.reload_failures
        wait_until(lambda: service.reload_failures > seen, "a retry")

        reload_op = client.get("/v1/api/metric/operation/rReload").json()
        error_count = next(c.get("Count", 0) for c in reload_op["Counters"] if c["Value"] == "error")
        assert error_count == service.reload_failures >= 2  # the metrics see every failed reload

        point(versions["link"], versions["v2"])
        wait_until(lambda: client.get("/v1/api/health").json() == {"r": 1}, "health back to 1")
        assert client.get("/v1/api/config").json()["Models"][0]["DictMeta"]["Error"] == ""
        assert post(client, row).json()["dictHash"] != good["dictHash"]
        prometheus = client.get("/metrics").text
        assert f'mly_model_reloads_total{{model="r",result="error"}} {float(service.reload_failures)}' in prometheus
        assert f'mly_model_reloads_total{{model="r",result="ok"}} {float(service.reloads)}' in prometheus


def test_reload_with_same_vocabulary_drops_memory_entries(
    reloading_server: LiveServer, versions: dict[str, Path]
) -> None:
    server = reloading_server
    service = server.registry.get("r")
    row = {"sa": "b", "sl": "c", "i1": 30, "fl": 2.0}
    with server.client() as client:
        first = post(client, row).json()
        evaluated = service.rows_evaluated
        post(client, row)
        assert service.rows_evaluated == evaluated  # cached
        point(versions["link"], versions["retrained"])
        wait_until(lambda: service.reloads >= 1, "the reload")
        again = post(client, row).json()
    assert again["dictHash"] == first["dictHash"]  # same vocabulary, same hash
    assert service.rows_evaluated == evaluated + 1  # but evaluated by the new version


def test_old_version_is_retired_and_freed(reloading_server: LiveServer, versions: dict[str, Path]) -> None:
    import gc
    import weakref

    service = reloading_server.registry.get("r")
    old = service.current
    batcher = old.batcher
    assert batcher is not None
    gone = weakref.ref(old.loaded)
    del old
    point(versions["link"], versions["v2"])
    wait_until(lambda: service.reloads >= 1, "the reload")
    wait_until(lambda: batcher.closed, "the old batcher to close", 30)
    gc.collect()
    wait_until(lambda: gone() is None, "the old model to be freed", 30)


def test_rows_of_a_replaced_version_are_answered_but_never_stored(
    versions: dict[str, Path], tmp_path: Path
) -> None:
    """A request evaluated by the old version finishes after the swap: its row must not
    enter the memory tier the swap just cleared, or it is served as current for the TTL.

    The request is held in the old version for real: the one inference thread is busy
    with other work (as under load), so its batch runs only after the reload.
    """
    point(versions["link"], versions["v1"])
    config = {
        "Endpoint": {"InferenceThreads": 1, "WriteTimeoutMs": 60_000},  # the held request must not expire
        "Models": [{"ID": "r", "URL": str(versions["link"]), "DataStore": "mem", "ReloadIntervalSec": POLL_S,
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}],
    }
    server = LiveServer(config, tmp_path).start()
    try:
        service = server.registry.get("r")
        old = service.current
        row = {"sa": "b", "sl": "c", "i1": 30, "fl": 2.0}
        gate = threading.Event()
        busy = server.registry.executor.submit(gate.wait, 60)
        answers: list[httpx.Response] = []

        def ask() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                answers.append(post(client, row))

        held = threading.Thread(target=ask)
        held.start()
        wait_until(lambda: len(old.flight) == 1, "the request to reach the old version")
        point(versions["link"], versions["reweighted"])
        wait_until(lambda: service.reloads >= 1, "the reload")
        assert service.current.dict_hash == old.dict_hash  # nothing but the weights changed
        gate.set()
        busy.result(timeout=30)
        held.join(timeout=30)
        old_score = float(expected_keras_lookup(["b"], ["c"], [30], [2.0])["score"][0, 0])
        assert answers[0].status_code == 200
        assert answers[0].json()["data"]["score"] == pytest.approx(old_score)  # asked before the swap
        evaluated = service.rows_evaluated
        with server.client() as client:
            again = post(client, row).json()
        assert again["data"]["score"] == pytest.approx(old_score + 1000.0)  # the new version's answer
        assert service.rows_evaluated == evaluated + 1
    finally:
        server.stop()


def test_entries_of_the_replaced_version_in_redis_are_not_served(
    versions: dict[str, Path], tmp_path: Path, redis_servers: dict
) -> None:
    """Same dictionary hash, new weights: the old version's rows in the L1 (Redis) must not
    come back, neither as L1 hits nor copied into the memory tier the reload cleared."""
    redis = redis_servers["l1"]
    redis.ensure_up()
    redis.flush()
    point(versions["link"], versions["v1"])
    config = {
        "Models": [{"ID": "r", "URL": str(versions["link"]), "DataStore": "mem", "ReloadIntervalSec": POLL_S,
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [{"ID": "l1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": redis.port}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}, "Connection": "l1", "Dataset": "reload"}],
    }
    server = LiveServer(config, tmp_path).start()
    try:
        service = server.registry.get("r")
        cache = server.registry.caches["mem"]
        row = {"sa": "b", "sl": "c", "i1": 30, "fl": 2.0}
        old_score = float(expected_keras_lookup(["b"], ["c"], [30], [2.0])["score"][0, 0])
        with server.client() as client:
            assert post(client, row).json()["data"]["score"] == pytest.approx(old_score)
            wait_until(lambda: cache.counters.writes >= 1, "the row to reach Redis")
            point(versions["link"], versions["reweighted"])
            wait_until(lambda: service.reloads >= 1, "the reload")
            time.sleep(1.1)  # rows written within a second of the reload are not trusted either
            evaluated = service.rows_evaluated
            again = post(client, row).json()
            assert again["data"]["score"] == pytest.approx(old_score + 1000.0)  # not the L1 entry
            assert service.rows_evaluated == evaluated + 1
            assert cache.counters.stale >= 1
            wait_until(lambda: cache.counters.writes >= 2, "the new row to reach Redis")
            cache.memory.clear()  # the new version's entry is served from L1
            assert post(client, row).json()["data"]["score"] == pytest.approx(old_score + 1000.0)
            assert service.rows_evaluated == evaluated + 1
    finally:
        server.stop()
