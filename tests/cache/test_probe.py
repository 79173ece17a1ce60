"""``mly-fast check`` reports a store it cannot reach, as a warning, against real servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from aerospike_server import AerospikeServer
from click.testing import CliRunner
from redis_server import RedisServer, free_port

from mly.cache.probe import probe_connection
from mly.cli import main
from mly.config.schema import Connection, Timeout


def write_config(tmp_path: Path, model_dirs: dict[str, str], connections: list[dict[str, Any]]) -> Path:
    stores = [{"ID": f"ds{i}", "Connection": c["ID"], "Namespace": "test", "Dataset": "probe"}
              for i, c in enumerate(connections)]
    config = {
        "Models": [{"ID": "t", "URL": model_dirs["keras"], "DataStore": "ds0",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [*connections, {"ID": "unused", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": 1}],
        "Datastores": stores,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_check_warns_about_unreachable_stores_and_still_succeeds(
    model_dirs: dict[str, str], tmp_path: Path, redis: dict[str, RedisServer], aerospike_l1: AerospikeServer
) -> None:
    aerospike_l1.ensure_up()
    dead_redis, dead_aero = free_port(), free_port()
    timeout = {"Connection": 300}
    path = write_config(tmp_path, model_dirs, [
        {"ID": "redisUp", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": redis["l1"].port},
        {"ID": "aeroUp", "Hostnames": "127.0.0.1", "Port": aerospike_l1.port},
        {"ID": "redisDown", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": dead_redis, "Timeout": timeout},
        {"ID": "aeroDown", "Hostnames": "127.0.0.1", "Port": dead_aero, "Timeout": timeout},
    ])
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "unreachable" in line]
    assert len(warnings) == 2, result.output
    redis_warning, aero_warning = sorted(warnings, reverse=True)
    assert redis_warning.startswith(f"warning: Connections[redisDown] (redis 127.0.0.1:{dead_redis}, used by ds2 L1)")
    assert "Connection refused" in redis_warning and "treat it as down" in redis_warning
    assert aero_warning.startswith(f"warning: Connections[aeroDown] (aerospike 127.0.0.1:{dead_aero}, used by ds3 L1)")
    assert "unused" not in result.output  # only connections a datastore uses are probed
    assert result.output.rstrip().endswith("ok: 1 model(s)")


def test_probe_connection_answers_none_for_live_stores(
    redis: dict[str, RedisServer], aerospike_l1: AerospikeServer
) -> None:
    aerospike_l1.ensure_up()
    assert probe_connection(redis["l1"].connection()) is None
    assert probe_connection(aerospike_l1.connection()) is None
    assert probe_connection(Connection(id="x", kind="aerospike", hostnames="", port=3000)) == "ValueError: no Hostnames"
    aerospike_l1.pause()
    try:
        frozen = aerospike_l1.connection(timeout_ms=200, connect_ms=300)
        problem = probe_connection(frozen)  # accepts the TCP connect, never answers
        assert problem is not None and "TimeoutError" in problem
        stuck = Connection(id="r", kind="redis", hostnames="127.0.0.1", port=free_port(),
                           timeout=Timeout(connection=200))
        assert probe_connection(stuck) is not None
    finally:
        aerospike_l1.resume()
