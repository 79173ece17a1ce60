"""The access log against a real server: off by default, one line per eval request when on,
with the cache outcome a user could not see before (hit, miss, partial)."""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path

import orjson
from live_server import LiveServer

from mly.logs.access import AccessLog, cache_outcome
from mly.logs.format import JsonFormatter


def config(model_dirs: dict[str, str], *, access_log: bool) -> dict:
    return {
        "Endpoint": {"AccessLog": access_log},
        "Models": [
            {"ID": "sli", "URL": model_dirs["keras"], "DataStore": "mem", "Inputs": [{"Name": "fl", "Precision": 2}]},
            {"ID": "num", "URL": model_dirs["numeric"], "UseDict": False},
        ],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}],
    }


def capture(server: LiveServer) -> io.StringIO:
    """Point the server's access log at a buffer of our own (it writes to stderr otherwise)."""
    out = io.StringIO()
    server.app.access_log.stream = out
    return out


def wait_for_lines(out: io.StringIO, count: int) -> list[str]:
    """Lines are written after the response and in batches (every 100 ms): wait for them."""
    deadline = time.monotonic() + 10
    while len(out.getvalue().splitlines()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return out.getvalue().splitlines()


def test_cache_outcome_words() -> None:
    assert cache_outcome(1, 1, True) == "hit"
    assert cache_outcome(3, 0, True) == "miss"
    assert cache_outcome(3, 2, True) == "partial"
    assert cache_outcome(3, 0, False) == "-"
    assert cache_outcome(0, 0, True) == "-"


def test_access_log_is_off_by_default(model_dirs: dict[str, str], tmp_path: Path) -> None:
    server = LiveServer(config(model_dirs, access_log=False), tmp_path).start()
    try:
        assert server.app.access_log is None  # nothing exists that could write a line
        with server.client() as client:
            assert client.post("/v1/api/model/sli/eval", json={"sa": "a", "sl": "b", "i1": 1, "fl": 1.0}).is_success
    finally:
        server.stop()


def test_one_line_per_request_with_the_cache_outcome(model_dirs: dict[str, str], tmp_path: Path) -> None:
    server = LiveServer(config(model_dirs, access_log=True), tmp_path).start()
    out = capture(server)
    row = {"sa": "a", "sl": "b", "i1": 7, "fl": 2.5}
    try:
        with server.client() as client:
            client.post("/v1/api/model/sli/eval", json=row)  # miss
            client.post("/v1/api/model/sli/eval", json=row)  # hit
            batch = {"batch_size": 3, "sa": ["a", "b", "c"], "sl": ["b", "c", "a"], "i1": [7], "fl": [2.5]}
            client.post("/v1/api/model/sli/eval", json=batch)  # row 0 cached, rows 1-2 new
            client.get("/v1/api/model/sli/eval", params={"sa": "a", "sl": "b", "i1": "7", "fl": "2.5"})  # GET hit
            client.post("/v1/api/model/sli/eval", json={"sa": "a", "nope": 1})  # 400
            client.post("/v1/api/model/num/eval", json={"x1": 1.0, "x2": 2.0})  # a model without a cache
            client.get("/v1/api/model/sli/meta/config")  # not an eval: not logged
        lines = wait_for_lines(out, 6)
    finally:
        server.stop()
    assert len(lines) == 6, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO mly\.access: "
                        r"POST /v1/api/model/sli/eval 200 model=sli rows=1 cache=miss cached_rows=0 tiers=model:1 "
                        r"latency_us=\d+ client=127\.0\.0\.1:\d+", lines[0]), lines[0]
    assert " 200 model=sli rows=1 cache=hit cached_rows=1 tiers=memory:1 " in lines[1]
    assert " 200 model=sli rows=3 cache=partial cached_rows=1 tiers=memory:1,model:2 " in lines[2]
    assert "mly.access: GET /v1/api/model/sli/eval 200 model=sli rows=1 cache=hit cached_rows=1 tiers=memory:1 " in lines[3]
    assert " 400 model=sli rows=0 cache=- cached_rows=0 tiers=- " in lines[4] and "error=\"unknown field: 'nope'" in lines[4]
    assert " 200 model=num rows=1 cache=- cached_rows=0 tiers=model:1 " in lines[5]


def test_json_lines_carry_the_fields_as_keys() -> None:
    """What ``--log-format json`` prints for one request: the keys every JSON log line has, plus the fields."""
    out = io.StringIO()
    log = AccessLog(json=True, stream=out)
    log.write(method="POST", path="/v1/api/model/m/eval", model="m", status=200, rows=4, cached_rows=3, cached=True,
              latency_us=250, client=("10.0.0.1", 5000), tiers=(0, 2, 1, 0))
    log.write(method="POST", path="/v1/api/model/m/eval", model="m", status=400, rows=0, cached_rows=0, cached=True,
              latency_us=90, client=None, error=ValueError("x: bad"))
    first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert first == {
        "time": first["time"], "level": "INFO", "logger": "mly.access", "message": "eval", "method": "POST",
        "path": "/v1/api/model/m/eval", "model": "m", "status": 200, "rows": 4, "cache": "partial", "cached_rows": 3,
        "tiers": {"memory": 2, "l1": 1, "model": 1}, "latency_us": 250, "client": "10.0.0.1:5000",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["error"] == "x: bad" and second["cache"] == "-" and second["client"] == "-"
    # The same keys as mly's other JSON log lines (the logging formatter).
    record = logging.LogRecord("mly.service", logging.WARNING, __file__, 1, "reload failed", None, None)
    assert set(orjson.loads(JsonFormatter().format(record))) == {"time", "level", "logger", "message"}


def test_lines_are_batched_and_flushed() -> None:
    """Inside the event loop lines wait for the timer (or a full batch) and are written in one call."""
    import asyncio

    out = io.StringIO()
    log = AccessLog(stream=out, flush_lines=3, flush_interval_s=0.05)

    def one() -> None:
        log.write(method="GET", path="/p", model="m", status=200, rows=1, cached_rows=0, cached=False,
                  latency_us=1, client=None)

    async def scenario() -> list[int]:
        seen = []
        one()
        seen.append(len(out.getvalue().splitlines()))  # buffered
        await asyncio.sleep(0.2)
        seen.append(len(out.getvalue().splitlines()))  # the timer wrote it
        one(), one(), one()
        seen.append(len(out.getvalue().splitlines()))  # a full batch is written at once
        return seen

    assert asyncio.run(scenario()) == [0, 1, 4]
    assert log.lines_written == 4 and log.write_errors == 0


def test_tiers_say_which_source_answered_each_row(model_dirs: dict[str, str], tmp_path: Path,
                                                  redis_servers: dict) -> None:
    """A real Redis as L1 behind the memory tier, and a memo: each source shows up by name."""
    port = redis_servers["l1"].port
    cfg = {
        "Endpoint": {"AccessLog": True},
        "Models": [{"ID": "sli", "URL": model_dirs["keras"], "DataStore": "tiers", "Inputs": [{"Name": "fl", "Precision": 2}],
                    "ResponseMemo": {"SizeMb": 1}}],
        "Connections": [{"ID": "r1", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": port}],
        "Datastores": [{"ID": "tiers", "Cache": {"SizeMb": 4}, "Connection": "r1", "Namespace": "acc",
                        "Dataset": f"tiers{time.time_ns()}"}],
    }
    server = LiveServer(cfg, tmp_path).start()
    out = capture(server)
    row = {"sa": "a", "sl": "c", "i1": 7, "fl": 9.25}
    batch = {"batch_size": 2, "sa": ["a", "b"], "sl": ["c", "c"], "i1": [7, 7], "fl": [9.25, 9.25]}
    try:
        with server.client() as client:
            client.post("/v1/api/model/sli/eval", json=row)  # evaluated; written to memory and (behind) to Redis
            deadline = time.monotonic() + 10
            while server.registry.get("sli").cache.counters.writes < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            server.registry.get("sli").cache.memory.clear()  # the row is now only in Redis
            client.post("/v1/api/model/sli/eval", json=batch)  # row 0 from L1, row 1 evaluated
            client.post("/v1/api/model/sli/eval", json=batch)  # the same bytes: the memo
            client.post("/v1/api/model/sli/eval", json={**batch, "sa": ["b", "a"]})  # both rows in memory now
        lines = wait_for_lines(out, 4)
    finally:
        server.stop()
    assert " rows=1 cache=miss cached_rows=0 tiers=model:1 " in lines[0], lines[0]
    assert " rows=2 cache=partial cached_rows=1 tiers=l1:1,model:1 " in lines[1], lines[1]
    assert " rows=2 cache=hit cached_rows=2 tiers=memo:2 " in lines[2], lines[2]
    assert " rows=2 cache=hit cached_rows=2 tiers=memory:2 " in lines[3], lines[3]
