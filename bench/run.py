"""The published benchmark: mly against a naive TensorFlow server, an exact-body cache and Triton.

One command builds the CTR-like benchmark model (``ctr_model.py``), runs every server on
the same request bodies, pinned the same way (each server on one core, the load
generator on the other), and writes the table and the plots::

    python bench/run.py                  # ~30 minutes: 3 alternating rounds, 5 s per cell after 1 s warm-up
    python bench/run.py --quick          # smoke run: 1 round, 1 s per cell, no warm-up
    python bench/run.py --publish        # also copy the plots into docs/benchmarks/

Servers (the names of the table): ``mly memory`` (memory tier + response memo), ``mly
per-row`` (the memory tier alone: no memo, every request keyed row by row), ``mly no cache``, ``mly redis L1`` (a real redis-server as the only tier: every lookup is a round
trip), ``naive`` (Starlette + TensorFlow, one call per request), ``exact-body`` (the naive
server behind a dict from request bytes to response bytes), ``triton`` (Triton through
PyTriton, dynamic batching and its response cache, in ``.venv-triton``).

Workloads: ``zipf32`` candidate batches as a page asks for them: 32 distinct rows per body
drawn from a Zipf(1.0) law over 200,000 distinct rows (5% out-of-vocabulary values), no body
ever sent twice to a server process, so only a per-row cache can hit (``--zipf-*`` options);
``hot`` single rows cycling 1,000 distinct rows (5% out-of-vocabulary values),
``cold`` single rows never repeated within a server process, ``batch32`` 1,000 distinct
32-row batches of the hot rows; Triton gets the same rows as KServe v2 bodies. Each cell
is one wrk run (1 thread, closed loop); the server's CPU is read from ``/proc`` for its
whole process tree. Every server of a round is started first and stopped after its last
cell; the cells interleave them (each workload and concurrency runs on every server back to
back, in an order that alternates from one cell to the next and from round to round), so a slow
stretch of this shared machine falls on both sides of a ratio. Then, on ``mly memory`` only, locust
runs raw-HTTP and ``mly.client`` users, and a last section times one prediction through
``mly.client`` with a warm local cache against the same one with no cache anywhere, on a
slow variant of the model (about 1 ms per evaluation).

Output in ``--out`` (default ``bench/results/<timestamp>/``): ``results.json`` (every
measured record), ``table.md`` (also printed) and ``throughput.png`` / ``p99.png``.
``--render DIR`` rebuilds the table and plots from a ``results.json`` without measuring.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import dataclasses
import datetime
import itertools
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import orjson
from _commands import children, mly_serve_cmd, tree_cpu_seconds, uvicorn_cmd
from _load import Loader, Result, Workload, free_port, post, server, taskset
from _report import Record, machine_and_versions, markdown, plots
from apps import EVAL_PATH, MODEL_ENV
from corpus import Corpus, Row, ZipfBatches, batch_body, ctr_fields, hot_batches, single_body, write_lines
from ctr_model import MODEL_ID, mly_model_config
from triton_server import INFER_PATH, READY_PATH, ensure_venv, v2_body

ROOT = BENCH.parent
SERVERS = ("mly memory", "mly per-row", "mly no cache", "mly redis L1", "naive", "exact-body", "triton")
WORKLOADS = ("zipf32", "hot", "cold", "batch32")
#: workloads whose bodies are never sent twice to one server process: each cell (and its warm-up)
#: starts where the previous one stopped, and nothing is pre-warmed
FRESH = frozenset({"cold", "zipf32"})
#: servers that answer a repeated request from a cache: their hot bodies are sent once before measuring
CACHED = frozenset({"mly memory", "mly per-row", "mly redis L1", "exact-body", "triton"})
#: servers whose answers to never-repeated bodies depend on the bodies they saw before (a per-row cache)
PER_ROW = frozenset({"mly memory", "mly per-row", "mly redis L1"})
HOT_ROWS, BATCH_BODIES, BATCH_ROWS = 1000, 1000, 32
HOT_SEED, COLD_SEED, BATCH_SEED = 1, 2, 3
#: cold rows to generate per measured second and concurrency level: above any server's miss rate
#: here (mly without a cache reached 15.3k req/s in a round at c=64 once single rows were encoded
#: with their batch, and 15k rows wrapped)
COLD_ROWS_PER_SECOND = 25_000
#: Zipf bodies to generate per second of load (warm-up included) and concurrency level: above
#: any server's rate here (mly answered 3.8-4.2k 32-row bodies/s at c=16 when the workload came)
ZIPF_BODIES_PER_SECOND = 6_000
#: zipf32 bodies sent before each cell (after catching up with the furthest server): about what
#: one second of warm-up at c=16 used to send
ZIPF_WARM_BODIES = 4_000
SLOW_HIDDEN = (2560, 2560)
"""The slow model's tower: about 1 ms per one-row evaluation on one core of the project's machine."""
LOCUSTFILE = BENCH / "locustfile.py"
LOCUST_CLASSES = ("HotRowUser", "ClientHotUser")
LOCUST_USERS = (1, 16)
MLY_EVAL = f"/v1/api/model/{MODEL_ID}/eval"
TTL_MS = 3_600_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- request bodies ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BodyFile:
    path: Path
    lines: int
    rows_per_body: int


def make_bodies(work: Path, cold_rows: int, triton: bool, zipf: ZipfBatches | None = None,
                zipf_bodies: int = 0) -> dict[tuple[str, str], BodyFile]:
    """(workload, "mly" | "v2") -> its file of bodies, one per line, the same rows in both formats."""
    fields = ctr_fields()
    out: dict[tuple[str, str], BodyFile] = {}
    if zipf is not None and zipf_bodies:
        paths = {"mly": work / "zipf32-mly.txt", **({"v2": work / "zipf32-v2.txt"} if triton else {})}
        handles = {fmt: p.open("wb") for fmt, p in paths.items()}
        try:
            for rows in zipf.batches(fields, zipf_bodies):
                handles["mly"].write(batch_body(rows) + b"\n")
                if "v2" in handles:
                    handles["v2"].write(v2_body(rows) + b"\n")
        finally:
            for fh in handles.values():
                fh.close()
        for fmt, p in paths.items():
            out[("zipf32", fmt)] = BodyFile(p, zipf_bodies, zipf.rows_per_body)

    hot = Corpus(fields, seed=HOT_SEED).rows(HOT_ROWS)
    batches = hot_batches(hot, BATCH_BODIES, BATCH_ROWS, seed=BATCH_SEED)
    if len(set(batches)) != BATCH_BODIES:
        raise RuntimeError("the batch bodies are not distinct; change BATCH_SEED")

    def put(workload: str, fmt: str, bodies: Sequence[bytes], rows: int) -> None:
        path = write_lines(work / f"{workload}-{fmt}.txt", bodies)
        out[(workload, fmt)] = BodyFile(path, len(bodies), rows)

    put("hot", "mly", [single_body(r) for r in hot], 1)
    put("batch32", "mly", batches, BATCH_ROWS)
    if triton:
        put("hot", "v2", [v2_body([r]) for r in hot], 1)
        put("batch32", "v2", [v2_body(_rows_of(orjson.loads(b))) for b in batches], BATCH_ROWS)
    # Cold rows: drawn in chunks and written as they come (a few hundred thousand rows).
    cold = Corpus(fields, seed=COLD_SEED)
    paths = {"mly": work / "cold-mly.txt", **({"v2": work / "cold-v2.txt"} if triton else {})}
    handles = {fmt: p.open("wb") for fmt, p in paths.items()}
    try:
        left = cold_rows
        while left > 0:
            rows = cold.rows(min(left, 10_000))
            left -= len(rows)
            handles["mly"].write(b"".join(single_body(r) + b"\n" for r in rows))
            if "v2" in handles:
                handles["v2"].write(b"".join(v2_body([r]) + b"\n" for r in rows))
    finally:
        for fh in handles.values():
            fh.close()
    for fmt, p in paths.items():
        out[("cold", fmt)] = BodyFile(p, cold_rows, 1)
    return out


def _rows_of(columns: dict[str, Any]) -> list[Row]:
    """A batch body's columns back to rows (the same values: orjson round-trips floats exactly)."""
    names = [n for n in columns if n != "batch_size"]
    return [{n: columns[n][i] for n in names} for i in range(int(columns["batch_size"]))]


# --- servers ----------------------------------------------------------------------------------

@dataclass
class Context:
    work: Path
    model_dir: str
    server_cpus: list[int] | None
    load_cpus: list[int] | None
    triton_python: Path | None


@dataclass
class Running:
    """A started server: where to send bodies, in which format, and whose CPU to count."""

    name: str
    base: str
    url: str
    fmt: str
    roots: list[int]
    redis_port: int = 0
    next_line: dict[str, int] = field(default_factory=dict)
    """Per ``FRESH`` workload: the first body line not sent to this process yet."""
    warmed: set[str] = field(default_factory=set)


def _redis_cmd(port: int, workdir: Path) -> list[str]:
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--protected-mode", "no"]


def _redis(port: int, command: bytes) -> bytes:
    """One inline command on a fresh connection (PING, DBSIZE): no client library needed."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(command + b"\r\n")
        return s.recv(256).strip()


@contextlib.contextmanager
def redis_server(ctx: Context) -> Iterator[tuple[int, int]]:
    """A fresh, empty redis-server pinned with the server it serves; yields (port, pid)."""
    port = free_port()
    proc = subprocess.Popen([*taskset(ctx.server_cpus), *_redis_cmd(port, ctx.work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if _redis(port, b"PING") == b"+PONG":
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mly_config(name: str, model_dir: str, redis_port: int = 0) -> dict[str, Any]:
    """The mly server configs of the table."""
    if name == "mly no cache":
        return {"Models": [mly_model_config(model_dir, cache=False)]}
    model = mly_model_config(model_dir, cache=True)
    memory = [{"ID": "ctrCache", "Cache": {"SizeMb": 256}, "TimeToLiveMs": TTL_MS}]
    if name == "mly memory":
        return {"Models": [{**model, "ResponseMemo": {"SizeMb": 64}}], "Datastores": memory}
    if name == "mly per-row":  # the memory tier alone: every request parsed and keyed row by row
        return {"Models": [model], "Datastores": memory}
    if name == "mly redis L1":  # no memory tier, no memo: every lookup is a Redis round trip
        return {"Models": [model],
                "Connections": [{"ID": "redisL1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": redis_port}],
                "Datastores": [{"ID": "ctrCache", "Connection": "redisL1", "Namespace": "mly", "Dataset": "ctr",
                                "TimeToLiveMs": TTL_MS}]}
    raise ValueError(f"not an mly server: {name}")


@contextlib.contextmanager
def start(name: str, ctx: Context) -> Iterator[Running]:
    """Start one server of the table (and its redis-server), pinned to the server cores."""
    with contextlib.ExitStack() as stack:
        extra: list[int] = []
        redis_port = 0
        if name == "mly redis L1":
            redis_port, redis_pid = stack.enter_context(redis_server(ctx))
            extra.append(redis_pid)
        port = free_port()
        env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
        ready, path, fmt = "/v1/api/health", MLY_EVAL, "mly"
        if name.startswith("mly "):
            cmd = mly_serve_cmd(mly_config(name, ctx.model_dir, redis_port), ctx.work, port)
        elif name in ("naive", "exact-body"):
            cmd = uvicorn_cmd("naive_app" if name == "naive" else "exact_body_app", port)
            env[MODEL_ENV] = ctx.model_dir
            path = EVAL_PATH.format(model=MODEL_ID)
        elif name == "triton":
            if ctx.triton_python is None:
                raise RuntimeError("triton was asked for without its virtualenv")
            cmd = [str(ctx.triton_python), str(BENCH / "triton_server.py"), "--model-dir", ctx.model_dir,
                   "--http-port", str(port), "--grpc-port", "0", "--metrics-port", str(free_port()), "--cache"]
            ready, path, fmt = READY_PATH, INFER_PATH, "v2"
        else:
            raise ValueError(f"unknown server {name!r} (known: {', '.join(SERVERS)})")
        before = children(os.getpid())
        base = stack.enter_context(server(cmd, port, ctx.server_cpus, env, ready=ready, timeout=300))
        roots = sorted(children(os.getpid()) - before) + extra
        yield Running(name, base, base + path, fmt, roots, redis_port)


def triton_version(base: str) -> str:
    """The Triton server's own version (its ``/v2`` metadata)."""
    try:
        with urllib.request.urlopen(base + "/v2", timeout=5) as resp:
            return str(json.loads(resp.read()).get("version", "unknown"))
    except OSError:
        return "unknown"


# --- cells ------------------------------------------------------------------------------------

def prewarm(running: Running, workload: str, body_file: BodyFile) -> None:
    """Send every distinct body of ``workload`` once, outside the measurement, so that on a
    caching server each measured hot request is a hit. Every answer must be a 200 (``post``
    raises otherwise), so a server that cannot serve the bodies stops the run here."""
    if workload in running.warmed:
        return
    running.warmed.add(workload)
    lines = body_file.path.read_bytes().splitlines()
    if running.name not in CACHED or workload in FRESH:
        post(running.url, lines[0])  # one answer checked; the model is warm from its start
        return
    send_bodies(running, lines, 8)


def send_bodies(running: Running, bodies: Sequence[bytes], threads: int) -> None:
    """POST every body (each answer must be a 200), then wait until a Redis tier has written them
    all, so that what was sent is in the cache before anything is measured."""
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda b: post(running.url, b), bodies):
            pass
    if running.redis_port:
        _drain_redis(running.redis_port)


def _drain_redis(port: int, timeout: float = 15.0) -> None:
    """Wait until the server's write-behind queue has reached Redis (the key count stops moving)."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = int(_redis(port, b"DBSIZE").lstrip(b":"))
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since > 0.5:
            return
        time.sleep(0.1)


def model_stats(running: Running) -> dict[str, Any] | None:
    """An mly server's ``meta/stats`` for the benchmark model (``None`` for the other servers)."""
    if not running.name.startswith("mly "):
        return None
    with urllib.request.urlopen(f"{running.base}/v1/api/model/{MODEL_ID}/meta/stats", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def row_hit_rate(before: dict[str, Any] | None, after: dict[str, Any] | None) -> float | None:
    """The share of rows a cache tier or the memo answered between two ``meta/stats`` reads."""
    if not before or not after or "rows" not in after:
        return None
    rows = after["rows"]["rows"] - before["rows"]["rows"]
    return (after["rows"]["cachedRows"] - before["rows"]["cachedRows"]) / rows if rows else None


def catch_up(running: Running, workload: str, body_file: BodyFile, line: int, conc: int) -> None:
    """Bring ``running`` to body ``line`` of a ``FRESH`` workload: a server with a per-row cache
    is sent every body it has not seen before that line; any other skips them (no body repeats,
    so none of them could ever be answered from what it saw).

    Why by count and not for a time: a per-row cache's hit rate on ``zipf32`` grows with every
    body it has seen (from about 80% after 2,000 bodies to 92% after 20,000), so a server that
    ran slower in the previous cell would start the next one colder, and run slower again."""
    first = running.next_line.get(workload, 0)
    running.next_line[workload] = max(first, line)
    if running.name not in PER_ROW or line <= first:
        return
    with body_file.path.open("rb") as fh:
        bodies = [b.rstrip(b"\n") for b in itertools.islice(fh, first, line)]
    send_bodies(running, bodies, max(2, min(conc, 16)))


def cell(loader: Loader, running: Running, workload: str, conc: int, body_file: BodyFile, seconds: int,
         warmup: int, rnd: int, start_line: int | None = None) -> Record:
    """One wrk run of ``workload`` at ``conc`` connections, with the server tree's CPU over it.
    ``start_line``: a ``FRESH`` workload's measured bodies start there (``catch_up`` first)."""
    prewarm(running, workload, body_file)

    def fresh_run(secs: int) -> Result:
        """A run from the first unsent line; wrk may have sent up to ``conc`` requests it did not
        complete, and asks for one body more per thread."""
        done = loader.run(running.url, Workload("file", running.next_line.get(workload, 0), str(body_file.path)),
                          conc, secs)
        running.next_line[workload] = running.next_line.get(workload, 0) + done.requests + done.errors + conc + 2
        return done

    if start_line is not None:
        catch_up(running, workload, body_file, start_line, conc)
    elif warmup and workload not in FRESH:
        loader.run(running.url, Workload("file", 0, str(body_file.path)), conc, warmup)
    stats_before = model_stats(running)
    cpu_before = tree_cpu_seconds(running.roots)
    if workload in FRESH:
        r = fresh_run(seconds)
    else:
        r = loader.run(running.url, Workload("file", 0, str(body_file.path)), conc, seconds)
    cpu = tree_cpu_seconds(running.roots) - cpu_before
    wrapped = workload in FRESH and running.next_line[workload] > body_file.lines
    hit_rate = row_hit_rate(stats_before, model_stats(running))
    rec: Record = {
        "server": running.name, "workload": workload, "concurrency": conc, "round": rnd, "tool": "wrk",
        "requests": r.requests, "seconds": r.seconds, "errors": r.errors, "rps": r.rps,
        "rows_per_s": r.rps * body_file.rows_per_body, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
        "cpu_s": cpu, "cpu_us_per_req": cpu / r.requests * 1e6 if r.requests else 0.0,
        "cpu_pct": 100 * cpu / r.seconds if r.seconds else 0.0, "wrapped": wrapped,
    }
    if hit_rate is not None:
        rec["row_hit_rate"] = hit_rate
    flag = f"  {r.errors} ERRORS" if r.errors else ""
    flag += f"  {workload.upper()} BODIES REPEATED (raise --cold-rows / --zipf-bodies)" if wrapped else ""
    flag += f"  rows hit {100 * hit_rate:.1f}%" if hit_rate is not None else ""
    log(f"  .. {running.name:<13} {workload:<7} c={conc:<3} {r.rps:>9,.0f} req/s  p50 {r.p50_ms:7.2f} ms  "
        f"p99 {r.p99_ms:7.2f} ms  cpu {rec['cpu_us_per_req']:7.0f} us/req {rec['cpu_pct']:4.0f}%{flag}")
    return rec


def cell_order(servers: Sequence[Running], turn: int) -> Sequence[Running]:
    """The servers in table order on even turns, reversed on odd ones: a cell's servers run back
    to back, and which one goes first alternates from one cell to the next and between rounds."""
    return servers if turn % 2 == 0 else servers[::-1]


IDLE_CPU_WARN_PCT = 5.0
"""Above this share of a core, the servers waiting their turn disturbed a cell: said in the log."""


def interleaved_cell(loader: Loader, running: Running, servers: Sequence[Running], workload: str, conc: int,
                     body_file: BodyFile, args: argparse.Namespace, rnd: int, start_line: int | None) -> Record:
    """``cell`` on ``running`` while the round's other servers wait, idle, on the same core.

    Why every server of a round is up at once: this machine has slow minutes (another tenant),
    and when each server ran all its cells in its own stretch of minutes, a slow stretch fell on
    one server and moved a ratio by 20-40%. Side by side, cell by cell, it falls on both sides of a
    ratio. What the waiting servers spend during the cell is recorded (``idle_cpu_pct``)."""
    others = [s.roots for s in servers if s is not running]
    idle_before = tree_cpu_seconds(r for roots in others for r in roots)
    rec = cell(loader, running, workload, conc, body_file, args.seconds, args.warmup, rnd, start_line)
    idle = tree_cpu_seconds(r for roots in others for r in roots) - idle_before
    rec["idle_cpu_pct"] = 100 * idle / rec["seconds"] if rec["seconds"] else 0.0
    if rec["idle_cpu_pct"] > IDLE_CPU_WARN_PCT:
        log(f"  !! the waiting servers used {rec['idle_cpu_pct']:.0f}% of a core during that cell")
    return rec


# --- locust -----------------------------------------------------------------------------------

def check_locustfile() -> None:
    """Stop before measuring anything if the locustfile lacks a user class this run needs."""
    if not LOCUSTFILE.is_file():
        raise SystemExit(f"{LOCUSTFILE} is missing: the locust cells need it (or pass --no-locust)")
    classes = {n.name for n in ast.walk(ast.parse(LOCUSTFILE.read_text())) if isinstance(n, ast.ClassDef)}
    missing = [c for c in LOCUST_CLASSES if c not in classes]
    if missing:
        raise SystemExit(f"{LOCUSTFILE} defines no {', '.join(missing)} user class "
                         f"(the locust cells run {', '.join(LOCUST_CLASSES)}); pass --no-locust to skip them")
    if shutil.which("locust") is None and not Path(sys.executable).with_name("locust").is_file():
        raise SystemExit("locust is not installed (pip install -e '.[dev]'); pass --no-locust to skip its cells")


def locust_cell(running: Running, cls: str, users: int, seconds: int, ctx: Context, rnd: int) -> Record:
    """One headless locust run of ``cls`` with ``users`` users, pinned to the load core; from its CSV."""
    prefix = ctx.work / f"locust-{rnd}-{cls}-{users}"
    cmd = [*taskset(ctx.load_cpus), sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
           "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", running.base, "--only-summary",
           "--csv", str(prefix), "--loglevel", "WARNING", cls]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180, check=False)
    stats = Path(f"{prefix}_stats.csv")
    if not stats.is_file():
        raise RuntimeError(f"locust {cls} wrote no statistics (exit {out.returncode}):\n{out.stderr[-3000:]}")
    with stats.open() as fh:
        table = list(csv.DictReader(fh))
    total = next((row for row in table if row["Name"] == "Aggregated"), None)
    if total is None or not int(total["Request Count"]):
        raise RuntimeError(f"locust {cls} sent no request (exit {out.returncode}):\n{out.stderr[-3000:]}")
    count = int(total["Request Count"])
    cached = sum(int(row["Request Count"]) for row in table if row["Name"].endswith(" cached"))
    rec: Record = {"server": running.name, "user_class": cls, "users": users, "round": rnd, "tool": "locust",
                   "requests": count, "failures": int(total["Failure Count"]), "rps": float(total["Requests/s"]),
                   "p50_ms": float(total["50%"]), "p99_ms": float(total["99%"]), "cached_share": cached / count}
    log(f"  .. locust {cls:<14} users={users:<3} {rec['rps']:>9,.0f} req/s  p50 {rec['p50_ms']:.0f} ms  "
        f"p99 {rec['p99_ms']:.0f} ms  failures {rec['failures']}  cached {100 * rec['cached_share']:.0f}%")
    return rec


# --- the end-to-end claim ---------------------------------------------------------------------

def runner_cost_ms(model_dir: str, row: Row, cpus: list[int] | None, seconds: float = 2.0) -> dict[str, float]:
    """p50/p99 of one 1-row ``ModelRunner.run`` in this process, on the server's core."""
    import numpy as np

    from mly.model.runner import ModelRunner
    from mly.model.saved_model import load_saved_model
    from mly.model.signature import read_signature

    everywhere = sorted(os.sched_getaffinity(0))
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        loaded = load_saved_model(model_dir)
        runner = ModelRunner(loaded, read_signature(loaded))
        feeds = {f.name: np.array([row[f.name]], dtype=object if f.dtype == "string" else f.dtype)
                 for f in ctr_fields()}
        for _ in range(100):
            runner.run(feeds)
        times: list[int] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline and len(times) < 100_000:
            started = time.perf_counter_ns()
            runner.run(feeds)
            times.append(time.perf_counter_ns() - started)
    finally:
        os.sched_setaffinity(0, everywhere)
    times.sort()
    return {"p50": times[len(times) // 2] / 1e6, "p99": times[int(len(times) * 0.99)] / 1e6}


def _median_call_us(fn: Any, calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - started)
    return statistics.median(times) / 1e3


def claim(ctx: Context, slow_dir: str, rounds: int, calls: int) -> Record:
    """One row through ``mly.client``: warm local cache vs no cache on either side (every call
    is a round trip and a model evaluation), against a real ``mly-fast serve`` of the slow model."""
    from ctr_model import parameter_count

    from mly.client import CacheScope, Client

    row = Corpus(ctr_fields(), oov=0.0, seed=HOT_SEED).row()
    cost = runner_cost_ms(slow_dir, row, ctx.server_cpus)
    log(f"  .. slow model: one-row evaluation p50 {cost['p50']:.2f} ms  p99 {cost['p99']:.2f} ms (in process)")
    config = {"Models": [mly_model_config(slow_dir, cache=True),
                         {**mly_model_config(slow_dir, cache=False), "ID": "ctr_nocache"}],
              "Datastores": [{"ID": "ctrCache", "Cache": {"SizeMb": 64}, "TimeToLiveMs": TTL_MS}]}
    port = free_port()
    results = []
    everywhere = sorted(os.sched_getaffinity(0))
    with server(mly_serve_cmd(config, ctx.work, port), port, ctx.server_cpus, {"TF_CPP_MIN_LOG_LEVEL": "3"},
                timeout=300):
        if ctx.load_cpus:
            os.sched_setaffinity(0, ctx.load_cpus)
        address = f"127.0.0.1:{port}"
        try:
            with Client(MODEL_ID, hosts=[address]) as cached, \
                    Client("ctr_nocache", hosts=[address], cache_scope=CacheScope.NONE) as plain:
                first, answer = cached.predict(row), plain.predict(row)
                if first.status != "ok" or answer.status != "ok" or cached.predict(row).status != "cached":
                    raise RuntimeError(f"unexpected statuses: {first.status}, {answer.status}")
                if first.data != answer.data:
                    log(f"WARNING: the cached and uncached models answered differently: {first.data} {answer.data}")
                for _ in range(20):  # connections and the server's batcher settle
                    plain.predict(row)
                for rnd in range(rounds):
                    cases = [("cached", cached), ("uncached", plain)]
                    measured = {name: _median_call_us(lambda c=client: c.predict(row), calls)
                                for name, client in (cases if rnd % 2 == 0 else cases[::-1])}
                    if cached.predict(row).status != "cached" or plain.predict(row).status != "ok":
                        raise RuntimeError("a client changed behaviour during the measurement")
                    results.append({"round": rnd, "cached_us": measured["cached"],
                                    "uncached_us": measured["uncached"],
                                    "ratio": measured["uncached"] / measured["cached"]})
                    log(f"  .. client predict: warm local cache {measured['cached']:.1f} us, no cache "
                        f"{measured['uncached']:,.0f} us: {results[-1]['ratio']:,.0f}x")
        finally:
            os.sched_setaffinity(0, everywhere)
    return {"hidden": list(SLOW_HIDDEN), "parameters": parameter_count(slow_dir), "model_cost_ms": cost,
            "calls": calls, "rounds": results}


# --- main -------------------------------------------------------------------------------------

def build_model(out: Path, hidden: Sequence[int] | None = None) -> str:
    cmd = [sys.executable, str(BENCH / "ctr_model.py"), str(out)]
    if hidden:
        cmd += ["--hidden", ",".join(map(str, hidden))]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"building the benchmark model failed:\n{done.stderr[-3000:]}")
    return str(out)


def _list(value: str, known: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in known]
    if unknown or not items:
        raise SystemExit(f"--{what}: unknown {', '.join(unknown) or '(empty)'}; known: {', '.join(known)}")
    return items


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; cells are median (min-max)")
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per cell")
    parser.add_argument("--warmup", type=int, default=1, help="wrk warm-up seconds before each hot/batch32 cell")
    parser.add_argument("--zipf-warm", type=int, default=ZIPF_WARM_BODIES,
                        help="zipf32: bodies each server with a per-row cache is sent before each cell, "
                             "counted from the furthest any server of the round has reached")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 1 s per cell, no warm-up")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, in this order")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--concurrency", default="1,16,64", help="wrk connections per cell")
    parser.add_argument("--out", type=Path, help="output folder (default bench/results/<timestamp>/)")
    parser.add_argument("--publish", action="store_true", help="also copy the plots into docs/benchmarks/")
    parser.add_argument("--no-triton", action="store_true", help="leave Triton out (no .venv-triton needed)")
    parser.add_argument("--no-locust", action="store_true", help="skip the locust cells")
    parser.add_argument("--no-claim", action="store_true", help="skip the end-to-end client section")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and load generator with taskset")
    parser.add_argument("--model", help="an already built benchmark model (default: build one)")
    parser.add_argument("--slow-model", help=f"an already built slow model (ctr_model.py --hidden "
                        f"{','.join(map(str, SLOW_HIDDEN))}; default: build one)")
    parser.add_argument("--cold-rows", type=int, default=0,
                        help=f"distinct cold rows (default {COLD_ROWS_PER_SECOND:,} x seconds x concurrency levels)")
    zipf = ZipfBatches()
    parser.add_argument("--zipf-rows", type=int, default=zipf.rows_per_body, help="zipf32: rows per body")
    parser.add_argument("--zipf-universe", type=int, default=zipf.universe, help="zipf32: distinct rows")
    parser.add_argument("--zipf-exponent", type=float, default=zipf.exponent, help="zipf32: the Zipf law's exponent")
    parser.add_argument("--zipf-oov", type=float, default=zipf.oov, help="zipf32: share of out-of-vocabulary values")
    parser.add_argument("--zipf-seed", type=int, default=zipf.seed, help="zipf32: seed of rows and draws")
    parser.add_argument("--zipf-bodies", type=int, default=0,
                        help=f"zipf32 bodies (default ({ZIPF_BODIES_PER_SECOND:,} x seconds + --zipf-warm) x "
                             "concurrency levels)")
    parser.add_argument("--claim-calls", type=int, default=500, help="timed predicts per case per round")
    parser.add_argument("--render", type=Path, metavar="DIR",
                        help="only rebuild table.md and the plots from DIR/results.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.zipf_warm = 1, 1, 0, 0
        args.claim_calls = min(args.claim_calls, 200)
    args.server_list = _list(args.servers, SERVERS, "servers")
    if args.no_triton and "triton" in args.server_list:
        args.server_list.remove("triton")
    args.workload_list = _list(args.workloads, WORKLOADS, "workloads")
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.levels or min(args.levels) < 1 or args.rounds < 1 or args.seconds < 1:
        parser.error("--concurrency, --rounds and --seconds need positive values")
    if not args.cold_rows:
        args.cold_rows = COLD_ROWS_PER_SECOND * args.seconds * len(args.levels)
    try:
        args.zipf = ZipfBatches(args.zipf_rows, args.zipf_universe, args.zipf_exponent, args.zipf_oov, args.zipf_seed)
    except ValueError as exc:
        parser.error(f"--zipf-*: {exc}")
    if not args.zipf_bodies:
        args.zipf_bodies = (ZIPF_BODIES_PER_SECOND * args.seconds + args.zipf_warm) * len(args.levels)
    return args


def write_report(doc: Record, out: Path, publish: bool) -> str:
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    text = markdown(doc)
    (out / "table.md").write_text(text)
    written = plots(doc, out)
    if publish:
        target = ROOT / "docs" / "benchmarks"
        target.mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copy2(path, target / path.name)
        log(f"copied {', '.join(p.name for p in written)} to {target}")
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        old: Record = json.loads((args.render / "results.json").read_text())
        print(write_report(old, args.render, args.publish))
        return 0
    started = time.perf_counter()
    stamp = datetime.datetime.now().astimezone()
    out: Path = args.out or ROOT / "bench" / "results" / stamp.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk; or make bench)")
    if "mly redis L1" in args.server_list and shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install -y redis-server); "
                         "or leave 'mly redis L1' out of --servers")
    run_locust = not args.no_locust and "mly memory" in args.server_list
    if run_locust:
        check_locustfile()
    triton_python = ensure_venv() if "triton" in args.server_list else None
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2 and not args.no_pin and shutil.which("taskset") is not None
    load_cpus, server_cpus = (cpus[:1], cpus[1:]) if pin else (None, None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    with tempfile.TemporaryDirectory(prefix="mly-bench-run-") as tmp:
        work = Path(tmp)
        log(f"mly published benchmark -> {out}")
        model_dir = args.model or build_model(work / "model")
        ctx = Context(work, model_dir, server_cpus, load_cpus, triton_python)
        log(f"  .. {time.perf_counter() - started:4.0f}s model ready; writing {args.cold_rows:,} cold rows")
        zipf = args.zipf if "zipf32" in args.workload_list else None
        bodies = make_bodies(work, args.cold_rows, "triton" in args.server_list, zipf, args.zipf_bodies)
        from ctr_model import parameter_count

        versions = machine_and_versions(ROOT)
        if triton_python is not None:
            versions["pytriton"] = subprocess.run(
                [str(triton_python), "-c", "import importlib.metadata as m; print(m.version('nvidia-pytriton'))"],
                capture_output=True, text=True, check=False).stdout.strip() or "unknown"
        doc: Record = {
            "header": {
                "command": "python bench/run.py" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:])),
                "started": stamp.isoformat(timespec="seconds"), "versions": versions,
                "pinning": (f"load generator on cpu {load_cpus}, each server on cpu {server_cpus} (taskset)"
                            if pin else f"none (cpus {cpus} shared)"),
                "model": "bench/ctr_model.py (8 inputs, vocabularies of 10 to 5,000 entries)",
                "parameters": parameter_count(model_dir),
            },
            "config": {"rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup,
                       "zipf_warm": args.zipf_warm,
                       "servers": args.server_list, "workloads": args.workload_list, "concurrency": args.levels,
                       "cold_rows": args.cold_rows, "hot_rows": HOT_ROWS, "batch_bodies": BATCH_BODIES,
                       "batch_rows": BATCH_ROWS, "zipf": {**dataclasses.asdict(args.zipf), "bodies": args.zipf_bodies}},
            "cells": [], "locust": [], "claim": None,
        }
        loader = Loader("wrk", load_cpus, tmp)
        for rnd in range(args.rounds):
            log(f"  .. {time.perf_counter() - started:4.0f}s round {rnd + 1}/{args.rounds}: starting "
                f"{', '.join(args.server_list)}")
            with contextlib.ExitStack() as stack:
                servers = [stack.enter_context(start(name, ctx)) for name in args.server_list]
                for running in servers:
                    if running.name == "triton":
                        versions["triton server"] = triton_version(running.base)
                turn = 0
                for workload in args.workload_list:
                    for conc in args.levels:
                        # zipf32: every server's measured bodies start at the same line, after the
                        # same bodies (``catch_up``)
                        start_line = (max(s.next_line.get(workload, 0) for s in servers) + args.zipf_warm
                                      if workload == "zipf32" else None)
                        for running in cell_order(servers, rnd + turn):
                            doc["cells"].append(interleaved_cell(loader, running, servers, workload, conc,
                                                                 bodies[(workload, running.fmt)], args, rnd,
                                                                 start_line))
                        turn += 1
                memory = next((s for s in servers if s.name == "mly memory"), None)
                if run_locust and memory is not None:
                    for cls in LOCUST_CLASSES:
                        for users in LOCUST_USERS:
                            doc["locust"].append(locust_cell(memory, cls, users, max(2, args.seconds), ctx, rnd))
        if not args.no_claim:
            log(f"  .. {time.perf_counter() - started:4.0f}s end-to-end client section")
            slow_dir = args.slow_model or build_model(work / "slow-model", SLOW_HIDDEN)
            doc["claim"] = claim(ctx, slow_dir, args.rounds, args.claim_calls)
        doc["header"]["elapsed_s"] = time.perf_counter() - started

    text = write_report(doc, out, args.publish)
    print(text)
    errors = sum(r["errors"] for r in doc["cells"])
    if errors:
        log(f"WARNING: {errors} failed requests in the wrk cells (see the table's notes)")
    log(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'throughput.png'}, {out / 'p99.png'} "
        f"in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
