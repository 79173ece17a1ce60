"""Go's start-up self-test (``Test``): a model that cannot answer stops the start with exit status 3."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
import yaml
from live_server import LiveServer, free_port
from serve_process import cli_env, mly_fast

from mly.config import parse_config
from mly.errors import ConfigError
from mly.service.selftest import self_test_bodies

DTYPES = {"sa": "string", "sl": "string", "i1": "int64", "fl": "float32"}


def model_with(test: dict) -> object:
    return parse_config({"Models": [{"ID": "m", "URL": "/m", "Test": test}]}).models[0]


def test_generated_and_given_values() -> None:
    bodies = dict(self_test_bodies(model_with({"Test": True, "SingleBatch": True}), DTYPES))  # type: ignore[arg-type]
    row = orjson.loads(bodies["single row"])
    assert set(row) == set(DTYPES) and row["sa"].startswith("test-") and isinstance(row["i1"], int)
    batch = orjson.loads(bodies["single row as a batch"])
    assert batch["batch_size"] == 1 and batch["sa"] == [row["sa"]]
    given = self_test_bodies(model_with({"Single": {"sa": "b"}, "Batch": {"i1": [1, 2, 3]}}), DTYPES)  # type: ignore[arg-type]
    assert orjson.loads(given[0][1])["sa"] == "b"
    batch = orjson.loads(given[1][1])
    assert batch["batch_size"] == 3 and batch["i1"] == [1, 2, 3] and len(batch["sa"]) == 3
    assert self_test_bodies(model_with({}), DTYPES) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(("test", "message"), [
    ({"Tset": True}, r"Models\[0\]\.Test\.Tset: unknown key"),
    ({"Test": "yes"}, r"Models\[0\]\.Test\.Test: must be true or false"),
    ({"Batch": {"sa": []}}, r"Models\[0\]\.Test\.Batch: must map each input to a non-empty list"),
])
def test_bad_test_blocks_name_the_key(test: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        model_with(test)


def test_a_passing_self_test_runs_before_the_first_request(model_dirs: dict[str, str], tmp_path: Path) -> None:
    config = {"Models": [{"ID": "t", "URL": model_dirs["keras"], "DataStore": "mem",
                          "Inputs": [{"Name": "fl", "Precision": 2}],
                          "Test": {"Test": True, "SingleBatch": True, "Batch": {"sa": ["a", "b"]}}}],
              "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 1}}]}
    live = LiveServer(config, tmp_path).start()
    try:
        with live.client() as client:
            perf = client.get("/v1/api/metric/operation/tPerf").json()
        assert perf["Count"] == 3 and next(c for c in perf["Counters"] if c["Value"] == "eval")["Count"] == 3
    finally:
        live.stop()


def serve(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*mly_fast(), "serve", str(config), "--host", "127.0.0.1", "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=240, env=cli_env())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failing_self_test_stops_the_start(model_dirs: dict[str, str], tmp_path: Path, workers: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [
        {"ID": "ok", "URL": model_dirs["numeric"], "UseDict": False, "Test": {"Test": True}},
        {"ID": "bad", "URL": model_dirs["keras"], "Test": {"Single": {"i1": "not a number"}}},
    ]}))
    done = serve(config, "--workers", workers)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "model 'bad': self-test (single row) failed with status 400: i1: expected int, got string 'not a number'" \
        in done.stderr
    assert "Traceback" not in done.stderr
