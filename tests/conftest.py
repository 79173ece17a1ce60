"""Session-wide fixtures: TensorFlow models are built once, one real server serves them all."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from live_server import BUFFER_SIZE, LiveServer
from redis_server import REDIS_BINARY, RedisServer
from required import missing


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every test model, built once per session (TensorFlow is imported only here)."""
    import model_builders as mb

    root = tmp_path_factory.mktemp("models")
    return {
        "keras": mb.build_keras_lookup_model(str(root / "keras")),
        "ops": mb.build_export_op_model(str(root / "ops")),
        "numeric": mb.build_numeric_model(str(root / "numeric")),
    }


def server_config(model_dirs: dict[str, str]) -> dict[str, Any]:
    return {
        "Endpoint": {"Port": 0, "BufferSize": BUFFER_SIZE},
        "Models": [
            {"ID": "sli", "URL": model_dirs["keras"], "DataStore": "mem",
             "Inputs": [{"Name": "fl", "Precision": 2}]},
            {"ID": "ops", "URL": model_dirs["ops"]},
            {"ID": "num", "URL": model_dirs["numeric"], "UseDict": False},
            # No DataStore: nothing is keyed, so the float needs no Precision and is evaluated raw.
            {"ID": "raw", "URL": model_dirs["keras"]},
            # Go example style: lower-case keys, auxiliary inputs and key fields, a transformer.
            {"id": "aux", "url": model_dirs["keras"], "useDict": True, "datastore": "auxmem",
             "transformer": "e2e_transformers:score_class",
             "keyfields": ["sa", "sl", "kf"],
             "inputs": [{"name": "sa"}, {"name": "sl"}, {"name": "note"}, {"name": "kf"},
                        {"name": "fl", "precision": 1}]},
        ],
        # One datastore per cached model: keys hold only the inputs (docs/differences-from-go.md #53).
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 8}}, {"ID": "auxmem", "Cache": {"SizeMb": 2}}],
    }


@pytest.fixture(scope="session")
def server(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(server_config(model_dirs), tmp_path_factory.mktemp("server")).start()
    yield live
    live.stop()


@pytest.fixture(scope="session")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RedisServer]]:
    """Two real redis-servers, ``l1`` and ``l2``, on free loopback ports for the whole session.

    Without the binary the Redis tests skip, except under CI (``CI=true``), where
    ``.ci/run`` installs it and a skip would hide a broken setup.
    """
    if not os.access(REDIS_BINARY, os.X_OK):
        message = f"redis-server not found at {REDIS_BINARY} (apt-get install -y redis-server)"
        missing(message)
    servers = {name: RedisServer(name, tmp_path_factory.mktemp(f"redis-{name}")) for name in ("l1", "l2")}
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.kill()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Redis Cluster of 3 masters + 3 replicas on loopback for the whole session."""
    from redis_cluster import REDIS_CLI, RedisCluster

    if not (os.access(REDIS_BINARY, os.X_OK) and os.access(REDIS_CLI, os.X_OK)):
        message = "redis-server or redis-cli not found (apt-get install -y redis-server)"
        missing(message)
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
