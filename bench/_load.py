"""Load generation and server processes for ``bench_server.py``.

Two closed-loop load generators with the same request bodies and the same result:

- ``wrk`` (preferred): C, epoll, one thread, a Lua script that rotates POST bodies and
  reports exact percentiles from its own histogram in a ``done()`` hook (so nothing is
  parsed from wrk's human-readable table). It costs a fraction of a core, which matters
  when client and server share a 2-core machine.
- a raw-socket asyncio HTTP/1.1 keep-alive client, used when wrk is not installed. It is
  far leaner than httpx but still Python: above ~10k req/s it is the bottleneck, so the
  output says which client ran.

Bodies are for the bundled example model (``examples/build_model.py``). Body ``k`` is a
pure function of ``k`` (same in Lua and Python), every ``k`` a different cache key, so
"hot" runs cycle ``k`` in ``[0, hot)`` and "unique" runs take fresh ``k`` from an offset
the caller advances past everything already sent: no request of an all-miss run can hit.
Only loopback is ever contacted; every run stops by itself after its duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
COUNTRIES = ("ca", "de", "fr", "gb", "jp", "us")
DEVICES = ("desktop", "mobile", "tablet")
CATEGORIES = ("books", "electronics", "fashion", "games", "home", "sports")


def body(k: int) -> bytes:
    """The ``k``-th request body; distinct ``k`` give distinct keys (price is keyed to the cent)."""
    c, k = COUNTRIES[k % 6], k // 6
    d, k = DEVICES[k % 3], k // 3
    g, k = CATEGORIES[k % 6], k // 6
    h, k = k % 24, k // 24
    return (f'{{"country":"{c}","device":"{d}","category":"{g}","hour":{h},'
            f'"price":{k // 100}.{k % 100:02d}}}').encode()



def batch_body(ks: range) -> bytes:
    """One batch request of the rows ``body(k)`` for ``k`` in ``ks`` (column per input)."""
    import json

    rows = [json.loads(body(k)) for k in ks]
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    return json.dumps({"batch_size": len(rows), **columns}, separators=(",", ":")).encode()


# The same ``body`` in Lua; must stay in step with the Python one above.
_LUA = r"""
local C = {"ca","de","fr","gb","jp","us"}
local D = {"desktop","mobile","tablet"}
local G = {"books","electronics","fashion","games","home","sports"}
local mode, n, i, reqs = "hot", 64, 0, {}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local function body(k)
  local c = C[k % 6 + 1]; k = math.floor(k / 6)
  local d = D[k % 3 + 1]; k = math.floor(k / 3)
  local g = G[k % 6 + 1]; k = math.floor(k / 6)
  local h = k % 24; k = math.floor(k / 24)
  return string.format('{"country":"%s","device":"%s","category":"%s","hour":%d,"price":%d.%02d}',
                       c, d, g, h, math.floor(k / 100), k % 100)
end
function init(args)
  mode = args[1]; n = tonumber(args[2])
  if mode == "hot" then
    for j = 0, n - 1 do reqs[j + 1] = wrk.format(nil, nil, nil, body(j)) end
  elseif mode == "file" then
    -- one body per line; start at line n + 1 and cycle (the caller sizes the file)
    local lines = {}
    for line in io.lines(args[3]) do lines[#lines + 1] = line end
    for j = 1, #lines do reqs[j] = wrk.format(nil, nil, nil, lines[(n + j - 1) % #lines + 1]) end
  end
end
-- wrk calls request() once more per thread than it sends: body 0 (or n) is skipped, harmlessly.
function request()
  i = i + 1
  if mode == "hot" then return reqs[(i - 1) % n + 1] end
  if mode == "file" then return reqs[(i - 1) % #reqs + 1] end
  return wrk.format(nil, nil, nil, body(n + i - 1))
end
function done(s, latency, requests)
  local e = s.errors
  io.write(string.format("BENCH %d %d %.1f %.1f %d %d\n", s.requests, s.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Result:
    """One closed-loop run: completed requests, wall time, latency percentiles, failures."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Workload:
    """``hot``: cycle bodies ``[0, n)``; ``unique``: bodies ``n, n+1, ...`` (n = offset);
    ``file``: the bodies in ``path`` (one per line) from line ``n`` on, cycling."""

    mode: str
    n: int
    path: str = ""


def taskset(cpus: Sequence[int] | None) -> list[str]:
    """Command prefix pinning a child to ``cpus`` (empty when not pinning)."""
    return ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []


class Loader:
    """Runs one workload against a URL with wrk or the asyncio client, pinned to ``cpus``."""

    def __init__(self, kind: str, cpus: Sequence[int] | None, workdir: str) -> None:
        if kind == "auto":
            kind = "wrk" if shutil.which("wrk") else "asyncio"
        if kind == "wrk" and not shutil.which("wrk"):
            raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk); use --client asyncio")
        self.kind = kind
        self.cpus = cpus
        self.script = Path(workdir) / "bench.lua"
        self.script.write_text(_LUA)

    def run(self, url: str, work: Workload, connections: int, seconds: int) -> Result:
        if self.kind == "wrk":
            return self._wrk(url, work, connections, seconds)
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)
        return asyncio.run(_asyncio_run(url, work, connections, float(seconds)))

    def _wrk(self, url: str, work: Workload, connections: int, seconds: int) -> Result:
        cmd = [*taskset(self.cpus), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
               "-s", str(self.script), url, "--", work.mode, str(work.n), work.path]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
        line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
        reqs, dur_us, p50, p99, status, sock = line.split()[1:]
        return Result(int(reqs), int(dur_us) / 1e6, float(p50) / 1e3, float(p99) / 1e3, int(status) + int(sock))


async def _asyncio_run(url: str, work: Workload, connections: int, seconds: float) -> Result:
    """Closed loop: ``connections`` keep-alive sockets, each sends its next request on each answer."""
    path = "/" + url.split("/", 3)[3]
    port = int(url.split("/")[2].rsplit(":", 1)[1])

    def raw(k: int) -> bytes:
        b = body(k)
        return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(b)}\r\n\r\n").encode() + b

    if work.mode == "file":
        lines = Path(work.path).read_bytes().splitlines()
        lines = lines[work.n % len(lines):] + lines[:work.n % len(lines)]
        hot = [(f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in lines]
    else:
        hot = [raw(k) for k in range(work.n)] if work.mode == "hot" else []
    keys: Iterator[int] = iter(range(work.n, 1 << 62))
    latencies: list[int] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def conn(index: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(HOST, port)
        sent = index
        try:
            while time.perf_counter() < deadline:
                request = hot[sent % len(hot)] if hot else raw(next(keys))
                sent += connections
                started = time.perf_counter_ns()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lower = head.lower()
                at = lower.index(b"content-length:") + 15
                await reader.readexactly(int(lower[at:lower.index(b"\r\n", at)]))
                latencies.append(time.perf_counter_ns() - started)
                if head[9:10] != b"2":
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    # Bounded even if the server stops answering: a read never outlives the run by more than 30 s.
    await asyncio.wait_for(asyncio.gather(*(conn(i) for i in range(connections))), seconds + 30)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Result(len(latencies), elapsed, _quantile_ms(latencies, 0.50), _quantile_ms(latencies, 0.99), errors)


def _quantile_ms(ordered: list[int], q: float) -> float:
    """Nearest-rank quantile of sorted nanosecond latencies, in ms."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6 if ordered else math.nan


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def post(url: str, data: bytes) -> bytes:
    """One request outside the timed runs (pre-warming, capturing a response body)."""
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bytes(resp.read())


@contextlib.contextmanager
def server(cmd: list[str], port: int, cpus: Sequence[int] | None, env: dict[str, str] | None = None,
           ready: str = "/v1/api/health", timeout: float = 120.0) -> Iterator[str]:
    """Start ``cmd`` (pinned), wait until ``GET ready`` answers 200, yield the base URL, stop it.

    Stopped with SIGINT first (uvicorn's clean shutdown), then SIGKILL after 10 s; its
    stderr goes to a temp file that is shown if the server dies or never becomes ready.
    """
    base = f"http://{HOST}:{port}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([*taskset(cpus), *cmd], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        try:
            limit = time.monotonic() + timeout
            while True:
                if proc.poll() is not None or time.monotonic() > limit:
                    log.seek(0)
                    raise RuntimeError(f"server {' '.join(cmd)} did not start:\n{log.read()[-3000:]}")
                try:
                    with urllib.request.urlopen(base + ready, timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    time.sleep(0.1)
            yield base
        finally:
            died = proc.poll()
            if died is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if died is not None or proc.returncode not in (0, -signal.SIGINT):
                # A crash under load must not pass for a slow run: say so next to the numbers.
                log.seek(0)
                print(f"WARNING: server {cmd[0]} exited with {proc.returncode}"
                      f"{' during the run' if died is not None else ''}:\n{log.read()[-2000:]}",
                      file=sys.stderr, flush=True)
