"""Debian's real ``prometheus`` and ``promtool`` for the operations tests.

The server listens on a free loopback port with its data in a temporary folder, scrapes and
evaluates rules every second (so a test needs seconds of traffic, not minutes), and is stopped
by its pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml
from redis_server import free_port
from required import missing

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
INTERVAL = "1s"


def require_binary(name: str, package: str) -> str:
    """The binary's path; without it the test skips, except under CI (``CI=true``), where
    ``make test`` installs it and a skip would hide a broken setup."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (apt-get install -y {package})"
        missing(message)
    return path


class PrometheusServer:
    """One ``prometheus`` process scraping ``targets`` (``host:port``) as job ``mly`` with the
    project's alert rules loaded."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path]) -> None:
        self.binary = require_binary("prometheus", "prometheus")
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL, "scrape_timeout": INTERVAL},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "mly", "metrics_path": "/metrics",
                                "static_configs": [{"targets": targets}]}],
        }))
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> PrometheusServer:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()}"
            try:
                if httpx.get(f"{self.base}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"prometheus did not become ready: {self.log.read_text()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a successful ``/api/v1`` answer; a failed one fails the test with Prometheus's error."""
        answer = httpx.get(f"{self.base}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", (path, params, answer)
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: each element's ``metric`` labels and float ``value``."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    def wait_for(self, expr: str, done: Any, timeout_s: float = 20) -> list[dict[str, Any]]:
        """Query ``expr`` until ``done(result)`` holds (scrapes land once a second)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if done(result):
                return result
            assert time.monotonic() < deadline, f"{expr}: still {result}"
            time.sleep(0.5)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
