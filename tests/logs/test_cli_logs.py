"""``mly-fast`` as a user runs it: a quiet start on CPU, and ``serve --access-log --log-format json
--workers 2`` writing JSON access lines from both workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from live_server import free_port

from mly.logs.quiet import filter_noise

TESTS = Path(__file__).resolve().parent.parent

#: Lines TensorFlow prints on a CPU-only start that a user can do nothing about.
NOISE_MARKERS = ("cuInit", "absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers",
                 "cudart_stub", "cuda_platform")


def mly_fast() -> list[str]:
    exe = shutil.which("mly-fast", path=os.path.dirname(sys.executable)) or shutil.which("mly-fast")
    assert exe, "mly-fast console script is not installed (pip install -e .)"
    return [exe]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    return env


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
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [*mly_fast(), "serve", str(config), "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
             "--access-log", "--log-format", "json"],
            stdout=log_file, stderr=subprocess.STDOUT, env=cli_env(),
        )
        try:
            deadline = time.monotonic() + 300
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v1/api/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.3)
            row = {"sa": "a", "sl": "b", "i1": 3, "fl": 1.25}
            # New connections spread over both workers; each worker's first sight of the row is a miss.
            for _ in range(12):
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                    assert client.post("/v1/api/model/sli/eval", json=row).status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail("server did not stop on SIGINT")
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
