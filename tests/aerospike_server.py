"""Real Aerospike servers on loopback that tests can kill, pause and restart.

The server is the single-node, in-memory Aerospike CE bundle in the ``shared``
folder beside the repository (``shared/tools/aerospike`` next to the repository
folder; override with ``MLY_AEROSPIKE_TOOLS``). Its ``start.sh`` returns once the node takes traffic;
the ``asd`` process is found through ``WORKDIR/asd.pid``.

Faults are caused for real, as with ``redis_server.RedisServer`` (same interface):
``kill()`` is SIGKILL (connections reset, port refused), ``pause()`` is SIGSTOP
(the kernel still accepts, nobody answers: timeouts), ``restart()`` starts an
empty server on the same port.

``aerospike_server(name)`` hands out one process-wide server per name, started
on first use, so the cache and end-to-end tests of one pytest run share them;
every server started here is killed at exit (``atexit``) and when the last
fixture holding it is finalized. ``MLY_TEST_AEROSPIKE=host:port`` points the
tests at an existing server instead; that one is never started, killed or paused
(the fault drills skip).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from required import missing

from mly.config.schema import Connection, Timeout

AEROSPIKE_ENV = "MLY_TEST_AEROSPIKE"
TOOLS_ENV = "MLY_AEROSPIKE_TOOLS"
NAMESPACE = os.environ.get("MLY_TEST_AEROSPIKE_NAMESPACE", "test")
TEST_TIMEOUT_MS = 250
REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60


def tools_dir() -> Path:
    """Where ``start.sh`` lives: ``$MLY_AEROSPIKE_TOOLS`` or ``shared/tools/aerospike`` beside the repository."""
    override = os.environ.get(TOOLS_ENV)
    return Path(override) if override else REPO_ROOT.parent / "shared" / "tools" / "aerospike"


def tools_available() -> bool:
    return os.access(tools_dir() / "start.sh", os.X_OK)


def _ports_free(base: int) -> bool:
    for port in (base, base + 1, base + 2):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port_triple() -> int:
    """A port P with P, P+1 and P+2 free on loopback (service, fabric, heartbeat).

    Picked below the kernel's ephemeral range: while a server is down for a
    restart drill, an outgoing connection must not be handed one of its ports.
    """
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(10_000, max(10_003, low - 3))
        if _ports_free(base):
            return base
    raise RuntimeError("no three consecutive free loopback ports")


def wait_stopped(pid: int, timeout_s: float = 5.0) -> None:
    """Wait until SIGSTOP took effect (state T): ``kill()`` returns before the target stops,
    and a process running on another core may still answer a request meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("T", "t"):
            return
        time.sleep(0.001)


class AerospikeServer:
    """One ``asd`` process on a fixed loopback port, kept across restarts."""

    def __init__(self, name: str, workdir: Path, port: int | None = None) -> None:
        self.name = name
        self.workdir = workdir
        self.port = port or free_port_triple()
        self.host = "127.0.0.1"
        self.pid: int | None = None
        self.paused = False
        self.managed = True
        """False for an external server (``MLY_TEST_AEROSPIKE``): no faults, no stopping."""

    @classmethod
    def external(cls, address: str) -> AerospikeServer:
        host, _, port = address.rpartition(":")
        server = cls("external", Path(tempfile.gettempdir()), int(port))
        server.host = host or "127.0.0.1"
        server.managed = False
        return server

    def start(self) -> None:
        self._require_managed()
        env = {**os.environ, "AS_START_TIMEOUT": str(START_TIMEOUT_S)}
        result = subprocess.run(
            [str(tools_dir() / "start.sh"), str(self.port), str(self.workdir)],
            capture_output=True, text=True, env=env, timeout=START_TIMEOUT_S + 30, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"aerospike {self.name} did not start on port {self.port}:\n"
                               f"{result.stdout}{result.stderr}")
        self.pid = int((self.workdir / "asd.pid").read_text().strip())
        self.paused = False

    def _require_managed(self) -> None:
        if not self.managed:
            pytest.skip(f"{AEROSPIKE_ENV} names an external server: it is not started, killed or paused")

    @property
    def running(self) -> bool:
        if self.pid is None:
            return False
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    def kill(self) -> None:
        """SIGKILL: open connections reset, new ones refused."""
        self._require_managed()
        if self.pid is None:
            return
        if self.paused:
            self.resume()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        # The main thread turns zombie before the others are gone; the listening
        # sockets close with the last thread, so wait for the ports themselves.
        deadline = time.monotonic() + 10
        while (self.running or not _ports_free(self.port)) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.pid = None

    def restart(self) -> None:
        """Start again on the same port (empty: the namespaces are in memory)."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connects still succeed (kernel backlog) but nothing answers."""
        self._require_managed()
        assert self.pid is not None, f"aerospike {self.name} is not running"
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True
        wait_stopped(self.pid)

    def resume(self) -> None:
        self._require_managed()
        assert self.pid is not None
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def ensure_up(self) -> None:
        if not self.managed:
            return
        if self.paused:
            self.resume()
        if not self.running:
            self.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self) -> Any:
        """A plain ``aerospike`` client (close it after use), independent of mly's store."""
        import aerospike

        return aerospike.client({"hosts": [(self.host, self.port)], "connect_timeout": 5000}).connect()

    @contextlib.contextmanager
    def connected(self) -> Iterator[Any]:
        client = self.client()
        try:
            yield client
        finally:
            client.close()

    def connection(self, timeout_ms: int = TEST_TIMEOUT_MS, *, connect_ms: int = 1000) -> Connection:
        return Connection(
            id=self.name, hostnames=self.host, port=self.port, kind="aerospike",
            timeout=Timeout(connection=connect_ms, socket=timeout_ms, total=timeout_ms),
        )

    def __repr__(self) -> str:
        return f"AerospikeServer({self.name!r}, port={self.port}, pid={self.pid})"


_lock = threading.Lock()
_servers: dict[str, AerospikeServer] = {}
_users: dict[str, int] = {}
_start_failures: dict[str, str] = {}
_root: Path | None = None


def _stop_all() -> None:
    for server in list(_servers.values()):
        if server.managed:
            with contextlib.suppress(Exception):
                server.kill()
    _servers.clear()
    if _root is not None:
        shutil.rmtree(_root, ignore_errors=True)


atexit.register(_stop_all)


def unavailable_reason() -> str | None:
    """Why Aerospike tests cannot run here, or None when they can."""
    try:
        import aerospike  # noqa: F401
    except ImportError:
        return "the aerospike client is not installed: pip install 'mly[aerospike]'"
    if os.environ.get(AEROSPIKE_ENV) or tools_available():
        return None
    return (f"no Aerospike server: set {AEROSPIKE_ENV}=host:port, or put the server bundle at "
            f"{tools_dir()} (or set {TOOLS_ENV})")


def acquire(name: str = "l1") -> AerospikeServer:
    """The session's server ``name``, started on first use (``release`` when done).

    ``l1`` is the external server when ``MLY_TEST_AEROSPIKE`` is set; other
    names then skip (a second server cannot be started there). A start that
    fails skips, except under ``CI=true`` where it fails: CI has the bundle, and
    a skip would hide a broken setup.
    """
    global _root
    reason = unavailable_reason()
    if reason is not None:
        if tools_available():  # else there is nothing to start, CI or not
            missing(reason)
        pytest.skip(reason)
    with _lock:
        server = _servers.get(name)
        if server is None:
            external = os.environ.get(AEROSPIKE_ENV)
            if external and not any(s.managed for s in _servers.values()):
                if name != "l1":
                    pytest.skip(f"{AEROSPIKE_ENV} names one external server; '{name}' needs a second")
                server = AerospikeServer.external(external)
            else:
                if _root is None:
                    _root = Path(tempfile.mkdtemp(prefix="mly-aerospike-"))
                server = AerospikeServer(name, _root / name)
                message = _start_failures.get(name)
                if message is None:
                    try:
                        server.start()
                    except Exception as exc:
                        message = _start_failures[name] = f"could not start Aerospike from {tools_dir()}: {exc}"
                if message is not None:  # failed now or earlier in this session: do not try again per test
                    missing(message)
                if name == "l1":
                    os.environ[AEROSPIKE_ENV] = server.address
            _servers[name] = server
        _users[name] = _users.get(name, 0) + 1
        return server


def release(name: str = "l1") -> None:
    """Drop one user of ``name``; the last one kills a server started here."""
    with _lock:
        _users[name] = _users.get(name, 1) - 1
        if _users[name] > 0:
            return
        server = _servers.pop(name, None)
        if server is not None and server.managed:
            server.kill()
            if name == "l1" and os.environ.get(AEROSPIKE_ENV) == server.address:
                del os.environ[AEROSPIKE_ENV]


@pytest.fixture(scope="session")
def aerospike_l1() -> Iterator[AerospikeServer]:
    """The session's first Aerospike server (skips with the reason when there is none)."""
    server = acquire("l1")
    try:
        yield server
    finally:
        release("l1")


@pytest.fixture(scope="session")
def aerospike_l2() -> Iterator[AerospikeServer]:
    """A second server, for L1 + L2 on separate Aerospike processes."""
    server = acquire("l2")
    try:
        yield server
    finally:
        release("l2")
