"""``mly-fast`` as a user runs it: a quiet start on CPU, and ``serve --access-log --log-format json
--workers 2`` writing JSON access lines from both workers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import yaml
from serve_process import ServeProcess, mly_fast
from serve_process import cli_env as serve_cli_env

from mly.logs.quiet import filter_noise

#: Lines TensorFlow prints on a CPU-only start that a user can do nothing about.
NOISE_MARKERS = ("cuInit", "absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers",
                 "cudart_stub", "cuda_platform")


def cli_env() -> dict[str, str]:
    return serve_cli_env(without=("TF_CPP_MIN_LOG_LEVEL",))  # as a user's shell has it


def write_config(model_dirs: dict[str, str], path: Path, **endpoint: object) -> Path:
    path.write_text(yaml.safe_dump({
        "Endpoint": {"Port": 0, **endpoint},
        "Models": [{"ID": "sli", "URL": model_dirs["keras"], "DataStore": "mem",
                    "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}],
    }))
    return path


def test_check_starts_without_tensorflow_noise(model_dirs: dict[str, str], tmp_path: Path) -> None:
    config = write_config(model_dirs, tmp_path / "config.yaml")
    done = subprocess.run([*mly_fast(), "check", str(config)], capture_output=True, text=True, env=cli_env(),
                          timeout=240)
    assert done.returncode == 0, done.stderr
    assert "ok: 1 model(s)" in done.stdout
    noisy = [line for line in done.stderr.splitlines() if any(m in line for m in NOISE_MARKERS)]
    assert noisy == [], done.stderr


def test_noise_filter_keeps_everything_else() -> None:
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1.1 1 port.cc:153] oneDNN custom operations are on. You may see ...\n",
        "I0000 00:00:1.2 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n",
        "E0000 00:00:1.3 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n",
        "E0000 00:00:1.4 1 some_op.cc:1] a real error\n",
        "Traceback (most recent call last):\n",
    ]
    assert filter_noise(lines) == lines[4:]
    # With a GPU driver present, a failed cuInit is a real problem and stays.
    with_driver = [lines[0], lines[3], lines[4]]
    assert filter_noise(with_driver, gpu_driver=True) == with_driver[1:]


def test_serve_workers_write_json_access_lines(model_dirs: dict[str, str], tmp_path: Path) -> None:
    config = write_config(model_dirs, tmp_path / "config.yaml")
    log_path = tmp_path / "serve.log"
    with ServeProcess(config, "--workers", "2", "--access-log", "--log-format", "json", env=cli_env(),
                      log_path=log_path) as served:
        row = {"sa": "a", "sl": "b", "i1": 3, "fl": 1.25}
        # New connections spread over both workers; each worker's first sight of the row is a miss.
        for _ in range(12):
            with served.client() as client:
                assert client.post("/v1/api/model/sli/eval", json=row).status_code == 200
        assert served.stop() == 0, served.output()
    text = log_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not_json == [], text  # every line, uvicorn's and mly's too, is JSON
    records = [orjson.loads(line) for line in lines]
    access = [r for r in records if r["logger"] == "mly.access"]
    assert len(access) == 12, text
    assert {r["model"] for r in access} == {"sli"} and {r["status"] for r in access} == {200}
    assert all(r["rows"] == 1 and r["latency_us"] > 0 and r["message"] == "eval" for r in access)
    outcomes = [r["cache"] for r in access]
    assert outcomes.count("miss") in (1, 2) and outcomes.count("hit") == 12 - outcomes.count("miss"), outcomes
    assert not any(m in text for m in NOISE_MARKERS), text
