"""The published benchmark's parts that decide what its numbers mean (``bench/run.py``).

The full run takes half an hour and is not a test; what is checked here is what would make
its table wrong without looking wrong: Triton and mly fed different rows, cold rows that
repeat, a server config that is not the one named in the table, CPU counted for the wrong
processes, ratios that are not taken round by round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def run() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        import run as module

        yield module
    finally:
        sys.path.remove(str(BENCH))


def _v2_rows(body: bytes) -> list[dict[str, Any]]:
    inputs = json.loads(body)["inputs"]
    count = inputs[0]["shape"][0]
    return [{i["name"]: i["data"][k] for i in inputs} for k in range(count)]


def test_triton_gets_the_same_rows_as_mly_and_cold_rows_never_repeat(run: ModuleType, tmp_path: Path) -> None:
    bodies = run.make_bodies(tmp_path, 2000, triton=True)
    for workload, rows_per_body in (("hot", 1), ("batch32", 32), ("cold", 1)):
        mly, v2 = bodies[(workload, "mly")], bodies[(workload, "v2")]
        mly_lines, v2_lines = mly.path.read_bytes().splitlines(), v2.path.read_bytes().splitlines()
        assert len(mly_lines) == len(v2_lines) == mly.lines == v2.lines
        assert mly.rows_per_body == v2.rows_per_body == rows_per_body
        for a, b in zip(mly_lines, v2_lines):
            parsed = json.loads(a)
            rows = run._rows_of(parsed) if "batch_size" in parsed else [parsed]
            assert rows == _v2_rows(b)
    hot = set(bodies[("hot", "mly")].path.read_bytes().splitlines())
    cold = bodies[("cold", "mly")].path.read_bytes().splitlines()
    assert len(hot) == run.HOT_ROWS
    assert len(set(cold)) == len(cold) == 2000 and not hot & set(cold)
    batch_rows = {json.dumps(r, sort_keys=True) for line in bodies[("batch32", "mly")].path.read_bytes().splitlines()
                  for r in run._rows_of(json.loads(line))}
    assert batch_rows <= {json.dumps(json.loads(h), sort_keys=True) for h in hot}


def test_each_mly_server_is_configured_as_its_table_name_says(run: ModuleType, tmp_path: Path) -> None:
    from mly.config.load import parse_config

    memory = parse_config(run.mly_config("mly memory", str(tmp_path)))
    store = memory.datastore(memory.models[0].datastore)
    assert store is not None and store.cache is not None and not store.connection
    assert memory.models[0].response_memo is not None

    redis = parse_config(run.mly_config("mly redis L1", str(tmp_path), redis_port=6390))
    store = redis.datastore(redis.models[0].datastore)
    assert store is not None and store.cache is None and store.l2 is None, "every lookup must reach Redis"
    assert redis.models[0].response_memo is None
    connection = redis.connection(store.connection)
    assert connection is not None and connection.kind == "redis" and connection.port == 6390

    per_row = parse_config(run.mly_config("mly per-row", str(tmp_path)))
    store = per_row.datastore(per_row.models[0].datastore)
    assert store is not None and store.cache is not None and per_row.models[0].response_memo is None

    plain = parse_config(run.mly_config("mly no cache", str(tmp_path)))
    assert not plain.models[0].datastore and plain.models[0].response_memo is None


def test_server_cpu_counts_the_whole_process_tree(tmp_path: Path) -> None:
    """A grandchild's CPU is the server's CPU (Triton's stub runs two levels below the process we start)."""
    sys.path.insert(0, str(BENCH))
    try:
        from _commands import children, tree_cpu_seconds
    finally:
        sys.path.remove(str(BENCH))
    burn = ("import sys, time\n"
            "while time.process_time() < 0.3: pass\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n")
    script = tmp_path / "burn.py"
    script.write_text(burn)
    # sh stays the parent (two commands), so the burning python is a grandchild of this process.
    proc = subprocess.Popen(["sh", "-c", f"{sys.executable} {script}; true"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert proc.pid in children(os.getpid())
        assert tree_cpu_seconds([proc.pid]) >= 0.25
        assert tree_cpu_seconds([]) == 0.0
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)


def _rec(server: str, rnd: int, rps: float) -> dict[str, Any]:
    return {"server": server, "workload": "hot", "concurrency": 16, "round": rnd, "tool": "wrk", "requests": 1,
            "seconds": 1.0, "errors": 0, "rps": rps, "rows_per_s": rps, "p50_ms": 1.0, "p99_ms": 2.0,
            "cpu_s": 0.5, "cpu_us_per_req": 10.0, "cpu_pct": 50.0, "wrapped": False}


def test_ratios_are_taken_round_by_round(run: ModuleType, tmp_path: Path) -> None:
    """mly 10x naive in round 0 and 6x in round 1 is "8.00x (6.00x-10.00x)", not the ratio of the medians."""
    from _report import markdown

    doc = {"header": {"command": "python bench/run.py", "started": "now", "elapsed_s": 1.0, "pinning": "none",
                      "model": "m", "parameters": 1,
                      "versions": {"cpu": "c", "cores": "2", "kernel": "k", "mly": "sha"}},
           "config": {"rounds": 2, "seconds": 1, "warmup": 0, "servers": ["mly memory", "naive"],
                      "workloads": ["hot"], "concurrency": [16]},
           "cells": [_rec("mly memory", 0, 1000.0), _rec("naive", 0, 100.0),
                     _rec("mly memory", 1, 1200.0), _rec("naive", 1, 200.0)],
           "locust": [], "claim": None}
    text = markdown(doc)
    mly_line = next(line for line in text.splitlines() if "| mly memory |" in line)
    assert "8.00x (6.00x-10.00x)" in mly_line
    assert "1,100 (1,000-1,200)" in mly_line
    pytest.importorskip("matplotlib")
    from _report import plots

    assert [p.name for p in plots(doc, tmp_path)] == ["throughput.png", "p99.png"]
    assert all(p.stat().st_size > 0 for p in tmp_path.iterdir())


def test_the_locust_cells_find_their_user_classes(run: ModuleType) -> None:
    # locust is not imported here: its gevent monkeypatching must stay out of the pytest process.
    run.check_locustfile()  # raises SystemExit naming the class if the locustfile lost one


def test_zipf_bodies_never_repeat_have_distinct_rows_and_a_long_tail(run: ModuleType, tmp_path: Path) -> None:
    """What makes zipf32 the case only a per-row cache can serve: rows repeat across bodies (a few
    rows very often), no body repeats, and Triton gets the same rows as mly."""
    from collections import Counter

    zipf = run.ZipfBatches(rows_per_body=8, universe=2000, exponent=1.0, oov=0.05, seed=7)
    bodies = run.make_bodies(tmp_path, 10, triton=True, zipf=zipf, zipf_bodies=1500)
    mly, v2 = bodies[("zipf32", "mly")], bodies[("zipf32", "v2")]
    lines = mly.path.read_bytes().splitlines()
    assert mly.lines == len(lines) == 1500 and mly.rows_per_body == 8
    assert len(set(lines)) == len(lines), "a body repeats: an exact-body cache could hit"
    seen: Counter[str] = Counter()
    for line, v2_line in zip(lines, v2.path.read_bytes().splitlines()):
        rows = run._rows_of(json.loads(line))
        assert rows == _v2_rows(v2_line)
        texts = [json.dumps(r, sort_keys=True) for r in rows]
        assert len(set(texts)) == len(texts) == 8, "a row repeats inside one body"
        seen.update(texts)
    counts = sorted(seen.values(), reverse=True)
    assert len(counts) <= 2000
    # Zipf(1) over 2,000 rows: the top row has weight 1/H(2000) ~ 12% of draws; under a uniform law
    # no row would come close. Drawing without repeats inside a body caps it at one per body.
    assert counts[0] > 0.05 * 1500 * 8 and counts[0] > 20 * counts[len(counts) // 2]
    # The same options give the same bodies (the benchmark's numbers can be reproduced).
    (tmp_path / "again").mkdir()
    again = run.make_bodies(tmp_path / "again", 10, triton=False, zipf=zipf, zipf_bodies=1500)
    assert again[("zipf32", "mly")].path.read_bytes() == mly.path.read_bytes()


def test_zipf_options_are_checked(run: ModuleType) -> None:
    with pytest.raises(SystemExit):
        run.parse_args(["--zipf-universe", "10", "--zipf-rows", "32"])
    with pytest.raises(SystemExit):
        run.parse_args(["--zipf-exponent", "-1"])
    args = run.parse_args(["--quick"])
    assert args.zipf == run.ZipfBatches() and args.zipf_bodies == run.ZIPF_BODIES_PER_SECOND * 3


@pytest.fixture()
def recording_server() -> Iterator[tuple[str, list[bytes]]]:
    """A real HTTP server on loopback that answers every POST with 200 and keeps its body."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[bytes] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                seen.append(body)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default 5 resets connections of a 16-thread burst

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/eval", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_zipf_cells_start_every_server_at_the_same_body_after_the_same_bodies(
        run: ModuleType, tmp_path: Path, recording_server: tuple[str, list[bytes]]) -> None:
    """A server with a per-row cache is sent exactly the bodies it missed before the cell's first
    line; a server without one only skips ahead (no body repeats, so none could ever hit)."""
    url, seen = recording_server
    lines = [b'{"batch_size":1,"i":[%d]}' % i for i in range(50)]
    path = tmp_path / "zipf32-mly.txt"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    body_file = run.BodyFile(path, len(lines), 1)
    per_row = run.Running("mly per-row", "", url, "mly", [], next_line={"zipf32": 7})
    naive = run.Running("naive", "", url, "mly", [], next_line={"zipf32": 3})
    run.catch_up(per_row, "zipf32", body_file, 30, 16)
    assert sorted(seen, key=lambda b: json.loads(b)["i"][0]) == lines[7:30]
    run.catch_up(naive, "zipf32", body_file, 30, 16)
    assert len(seen) == 23
    assert per_row.next_line["zipf32"] == naive.next_line["zipf32"] == 30
    run.catch_up(per_row, "zipf32", body_file, 20, 16)  # already past it: nothing sent, nothing rewound
    assert len(seen) == 23 and per_row.next_line["zipf32"] == 30


def test_cells_alternate_which_server_goes_first(run: ModuleType) -> None:
    servers = ["a", "b", "c"]
    assert [list(run.cell_order(servers, t)) for t in range(3)] == [servers, servers[::-1], servers]
