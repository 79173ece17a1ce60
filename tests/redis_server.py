"""Real redis-server processes on loopback that tests can kill, pause and restart.

Faults are caused for real, not simulated: ``kill()`` is SIGKILL (connections
reset, port refused), ``pause()`` is SIGSTOP (the kernel still accepts, nobody
answers: timeouts).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from mly.config.schema import Connection, Timeout

REDIS_BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"
TEST_TIMEOUT_MS = 250


def decode_entry(value: bytes | None) -> tuple[Any, int, int] | None:
    """One stored cache entry, decoded independently of mly: ``(row, dict_hash, expires_at_ms)``.

    Layout: version byte 1, int64 LE dictionary hash, int64 LE expiry in epoch ms, row JSON.
    """
    if value is None:
        return None
    assert value[0] == 1, f"not an mly entry: {value[:20]!r}"
    dict_hash, expires_at_ms = struct.unpack_from("<qq", value, 1)
    return json.loads(value[17:]), dict_hash, expires_at_ms


def encode_entry(row: Any, dict_hash: int, expires_at_ms: int) -> bytes:
    """What mly writes for ``row`` (``decode_entry``'s inverse), written independently of mly."""
    return b"\x01" + struct.pack("<qq", dict_hash, expires_at_ms) + json.dumps(row, separators=(",", ":")).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server child process on a fixed loopback port, kept across restarts."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.paused = False
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 5.0) -> None:
        import redis

        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited"
            try:
                with redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2) as r:
                    if r.ping():
                        return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: open connections reset, new ones refused."""
        if self.proc is not None:
            if self.paused:
                self.resume()
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Start again on the same port (empty: nothing is persisted)."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connects still succeed (kernel backlog) but nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def ensure_up(self) -> None:
        if self.paused:
            self.resume()
        if not self.running:
            self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=2)

    def flush(self) -> None:
        with self.client() as r:
            r.flushall()

    def connection(self, timeout_ms: int = TEST_TIMEOUT_MS) -> Connection:
        return Connection(
            id=self.name, hostnames="127.0.0.1", port=self.port, kind="redis",
            timeout=Timeout(connection=timeout_ms, socket=timeout_ms, total=timeout_ms),
        )
