"""``mly-fast serve --workers N``: real worker processes that cannot start, ``--import`` in each worker,
and remote model copies that belong to one process each."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import orjson
import yaml
from redis_server import free_port
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
    assert "Child process" not in out.replace("failed to start", ""), out  # no worker was replaced
    assert "Traceback" not in out, out


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
