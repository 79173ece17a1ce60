"""A sync ``Client`` created before ``os.fork()`` and used in the child (pre-fork workers).

The parent's store loop thread does not exist in the child, and its HTTP and
store connections are the parent's: the child must get its own, or be told
plainly that it cannot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from mly.client import CacheScope, Client, SharedStores

ROW = {"sa": "a", "sl": "b", "i1": 20, "fl": 7.0}
CHILD_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def server(counting_server: Any, model_dirs: dict[str, str], redis_servers: dict[str, Any],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The keras model with a Redis L1 (no memory tier on the server, so every hit is Redis's)."""
    redis = redis_servers["l1"]
    redis.ensure_up()
    timeout = {"Connection": 1000, "Socket": 250, "Total": 250}
    config = {
        "Models": [{"ID": "t", "URL": model_dirs["keras"], "Inputs": [{"Name": "fl", "Precision": 2}],
                    "DataStore": "l1"}],
        "Connections": [{"ID": "l1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": redis.port,
                         "Timeout": timeout}],
        "Datastores": [{"ID": "l1", "Connection": "l1", "Namespace": "fork", "Dataset": "t",
                        "TimeToLiveMs": 60000}],
    }
    live = counting_server(config, tmp_path_factory.mktemp("fork")).start()
    yield live
    live.stop()


def in_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` in a forked child; its JSON result (or its error) comes back through a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_fd)
            try:
                result = work()
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(write_fd, orjson.dumps(result))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    while (os.waitpid(pid, os.WNOHANG) == (0, 0)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return dict(orjson.loads(b"".join(chunks)))


def wait_for_server_writes(server: Any) -> None:
    cache = server.registry.get("t").cache
    assert cache is not None
    deadline = time.monotonic() + 10
    while cache.counters.writes == 0:
        assert time.monotonic() < deadline, "the server never wrote its row to Redis"
        time.sleep(0.02)


def test_forked_child_reads_the_store_with_its_own_loop_and_connections(server: Any) -> None:
    with Client("t", hosts=[server.address], cache_scope=CacheScope.L1) as client:
        assert client.predict(ROW).status == "ok"  # computed by the server, which writes Redis
        wait_for_server_writes(server)
        assert client.predict(ROW).status == "cached"  # the parent's own L1 hit
        evals = server.counter.evals

        def child() -> dict[str, Any]:
            first = client.predict(ROW)
            second = client.predict(dict(ROW, fl=8.0))  # a miss: asked over the child's own connection
            return {"first": first.status, "second": second.status}

        assert in_child(child) == {"first": "cached", "second": "ok"}
        assert server.counter.evals == evals + 1
        assert client.predict(ROW).status == "cached"  # the parent's client is untouched


def test_forked_child_with_shared_stores_is_told_to_build_its_own(server: Any) -> None:
    shared = SharedStores()
    try:
        with Client("t", hosts=[server.address], cache_scope=CacheScope.L1, shared_stores=shared) as client:
            assert client.predict(dict(ROW, fl=9.0)).status == "ok"

            def child() -> dict[str, Any]:
                return {"status": client.predict(dict(ROW, fl=9.0)).status}

            error = in_child(child)["error"]
            assert error.startswith("RuntimeError") and "forked" in error and "shared_stores" in error
    finally:
        shared.close()
