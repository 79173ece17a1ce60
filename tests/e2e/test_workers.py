"""``mly-fast serve --workers N``: real worker processes that cannot start, ``--import`` in each worker,
and remote model copies that belong to one process each."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import yaml
from redis_server import free_port
from s3_server import child_env, s3_server
from serve_process import ServeProcess, cli_env, mly_fast

from mly.cli import STARTUP_FAILURE

STOP_WITHIN_S = 180
"""Worker processes import TensorFlow (slow on a busy machine); a start that never stops exceeds this."""


def serve_until_it_exits(config: Path, *args: str) -> tuple[int | None, str]:
    """Run ``mly-fast serve``; its exit status, or ``None`` if it still ran after ``STOP_WITHIN_S``
    (then it and its workers, one process group, are killed)."""
    proc = subprocess.Popen([*mly_fast(), "serve", str(config), "--host", "127.0.0.1", "--port", str(free_port()),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(),
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=STOP_WITHIN_S)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out


def test_a_model_that_cannot_load_stops_every_worker(tmp_path: Path) -> None:
    """Not a worker restarted forever: status 3 and the one line ``--workers 1`` prints too."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [{"ID": "gone", "URL": str(tmp_path / "none")}]}))
    status, out = serve_until_it_exits(config, "--workers", "2")
    assert status == STARTUP_FAILURE, out[-3000:]
    reasons = [line for line in out.splitlines() if line.startswith("mly-fast: cannot start:")]
    assert reasons == [f"mly-fast: cannot start: model 'gone': model folder {tmp_path / 'none'} does not exist"], out
    assert " died" not in out, out  # uvicorn's line when it replaces a worker
    assert "Traceback" not in out, out


def test_a_worker_that_uvicorn_stops_still_fails_the_start(model_dirs: dict[str, str], tmp_path: Path) -> None:
    """A start-up failure mly does not see (the app's lifespan, injected by ``worker_faults``): uvicorn
    stops the supervisor without a reason; the server must still exit 3, not 0 as after a requested stop."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [{"ID": "num", "URL": model_dirs["numeric"], "UseDict": False}]}))
    status, out = serve_until_it_exits(config, "--workers", "2", "--import", "worker_faults")
    assert status == STARTUP_FAILURE, out[-3000:]
    assert "mly-fast: cannot start: a worker process could not start (its log says why)" in out
    assert "injected start-up fault" in out  # the worker's log


def test_import_reaches_every_worker(model_dirs: dict[str, str], tmp_path: Path) -> None:
    """A transformer registered by an ``--import`` module answers from spawned workers too."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [{
        "ID": "cls", "URL": model_dirs["keras"], "Transformer": "e2e-score-class",
        "Inputs": [{"Name": "fl", "Precision": 1}, {"Name": "kf"}],
    }]}))
    row = {"sa": "b", "sl": "b", "kf": "k", "fl": 0.0, "i1": 10}
    with ServeProcess(config, "--workers", "2", "--import", "e2e_transformers") as served:
        for _ in range(8):  # a new connection each: the kernel spreads them over the workers
            with served.client() as client:
                out = client.post("/v1/api/model/cls/eval", content=orjson.dumps(row)).json()
            assert out["status"] == "ok" and out["data"]["kf"] == "k", out
        assert served.stop() == 0


def copies(location: Path) -> dict[str, list[str]]:
    """Each folder under ``Location`` and the finished copies (not ``.partial-``) in it."""
    if not location.is_dir():
        return {}
    return {d.name: sorted(c.name for c in d.iterdir() if not c.name.startswith("."))
            for d in location.iterdir() if d.is_dir()}


def test_workers_copy_a_remote_model_into_folders_of_their_own(model_dirs: dict[str, str], tmp_path: Path) -> None:
    """Workers copying one model id into one folder renamed onto each other's copies (the worker died)
    and each reload deleted the others' copies. Now each has its own folder, removed when it stops."""
    s3fs = pytest.importorskip("s3fs", reason="pip install 'mly[s3]'")
    pytest.importorskip("moto.server", reason="pip install 'moto[server]'")
    location = tmp_path / "copies"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [{
        "ID": "num", "URL": "s3://worker-models/num", "Location": str(location), "UseDict": False,
        "ReloadIntervalSec": 0}]}))
    with s3_server() as endpoint:
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        fs.mkdir("worker-models")  # moto keeps buckets per test process: a name no other test uses
        fs.put(model_dirs["numeric"].rstrip("/") + "/", "worker-models/num", recursive=True)
        with ServeProcess(config, "--workers", "2", env=cli_env(**child_env(endpoint))) as served:
            deadline = time.monotonic() + STOP_WITHIN_S
            while len(copies(location)) < 2 or not all(copies(location).values()):
                assert served.proc is not None and served.proc.poll() is None, served.output()
                assert time.monotonic() < deadline, f"not one copy per worker: {copies(location)}"
                time.sleep(0.2)
            per_worker = copies(location)
            assert len(per_worker) == 2 and all(len(found) == 1 for found in per_worker.values()), per_worker
            with served.client() as client:
                assert client.get("/v1/api/health").json() == {"num": 1}
            assert served.stop() == 0
    assert copies(location) == {}  # each worker removed its folder when it stopped
