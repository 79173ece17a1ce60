"""A real ``mly-fast serve`` child process for end-to-end tests of the command itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx
from redis_server import free_port

TESTS = Path(__file__).resolve().parent


def mly_fast() -> list[str]:
    exe = shutil.which("mly-fast", path=os.path.dirname(sys.executable)) or shutil.which("mly-fast")
    assert exe, "mly-fast console script is not installed (pip install -e .)"
    return [exe]


def cli_env(*, without: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The test environment, with the tests folder importable (transformer modules for ``--import``);
    ``without`` drops variables a user's shell would not have (``TF_CPP_MIN_LOG_LEVEL``)."""
    dropped = {"PROMETHEUS_MULTIPROC_DIR", *without}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


class ServeProcess:
    """``mly-fast serve CONFIG --host 127.0.0.1 --port P ARGS...``, started and waited for until
    ``/v1/api/ready`` answers 200; ``stop()`` sends a signal and returns the exit status."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None,
                 log_path: Path | None = None, command: list[str] | None = None, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = [*(command or mly_fast()), "serve", str(config), "--host", "127.0.0.1", "--port", str(self.port),
                     *args]
        """``command``: another ``mly-fast`` (an installed wheel's); ``cwd``: where it runs."""
        self.env = env if env is not None else cli_env()
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.signalled = False
        self.log_path = log_path
        """Where its output goes (``None``: a pipe, read by ``output()``)."""

    def start(self, timeout_s: float = 240) -> ServeProcess:
        out = open(self.log_path, "w") if self.log_path is not None else subprocess.PIPE  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, text=True, env=self.env,
                                         cwd=self.cwd)
        finally:
            if self.log_path is not None:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"mly-fast serve exited: {self.output()}"
            try:
                if httpx.get(f"{self.base}/v1/api/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mly-fast serve did not become ready"
            time.sleep(0.2)

    def client(self, timeout_s: float = 30) -> httpx.Client:
        """A new connection each time (under ``--workers`` the kernel spreads connections)."""
        return httpx.Client(base_url=self.base, timeout=timeout_s)

    def send_signal(self, sig: int) -> None:
        """Once: a second SIGINT/SIGTERM makes uvicorn skip the graceful part."""
        assert self.proc is not None
        if not self.signalled and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.signalled = True

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 60) -> int:
        """Signal (unless already signalled) and wait; the exit status."""
        assert self.proc is not None
        self.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"mly-fast serve did not stop on {signal.Signals(sig).name}") from None

    def output(self) -> str:
        """Everything it printed (only once it has exited)."""
        if self.log_path is not None:
            return self.log_path.read_text() if self.log_path.exists() else ""
        if self.proc is None or self.proc.stdout is None or self.proc.poll() is None:
            return ""
        return self.proc.stdout.read()

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
