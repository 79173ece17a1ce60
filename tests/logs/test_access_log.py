"""The access log against a real server: off by default, one line per eval request when on,
with the cache outcome a user could not see before (hit, miss, partial)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import orjson
import pytest
from live_server import LiveServer

from mly.logs.access import ACCESS_LOGGER, AccessLog, cache_outcome
from mly.logs.format import FIELDS, JsonFormatter


def config(model_dirs: dict[str, str], *, access_log: bool) -> dict:
    return {
        "Endpoint": {"AccessLog": access_log},
        "Models": [
            {"ID": "sli", "URL": model_dirs["keras"], "DataStore": "mem", "Inputs": [{"Name": "fl", "Precision": 2}]},
            {"ID": "num", "URL": model_dirs["numeric"], "UseDict": False},
        ],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}],
    }


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]


def test_cache_outcome_words() -> None:
    assert cache_outcome(1, 1, True) == "hit"
    assert cache_outcome(3, 0, True) == "miss"
    assert cache_outcome(3, 2, True) == "partial"
    assert cache_outcome(3, 0, False) == "-"
    assert cache_outcome(0, 0, True) == "-"


def test_access_log_is_off_by_default(model_dirs: dict[str, str], tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    server = LiveServer(config(model_dirs, access_log=False), tmp_path).start()
    try:
        assert server.app.access_log is None
        caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
        with server.client() as client:
            assert client.post("/v1/api/model/sli/eval", json={"sa": "a", "sl": "b", "i1": 1, "fl": 1.0}).is_success
    finally:
        server.stop()
    assert access_lines(caplog) == []


def test_one_line_per_request_with_the_cache_outcome(model_dirs: dict[str, str], tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    server = LiveServer(config(model_dirs, access_log=True), tmp_path).start()
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
    finally:
        server.stop()
    lines = access_lines(caplog)
    assert len(lines) == 6, lines
    assert re.fullmatch(r"POST /v1/api/model/sli/eval 200 model=sli rows=1 cache=miss cached_rows=0 "
                        r"latency_us=\d+ client=127\.0\.0\.1:\d+", lines[0]), lines[0]
    assert " 200 model=sli rows=1 cache=hit cached_rows=1 " in lines[1]
    assert " 200 model=sli rows=3 cache=partial cached_rows=1 " in lines[2]
    assert lines[3].startswith("GET /v1/api/model/sli/eval 200 model=sli rows=1 cache=hit cached_rows=1 ")
    assert " 400 model=sli rows=0 cache=- cached_rows=0 " in lines[4] and "error=\"unknown field: 'nope'" in lines[4]
    assert " 200 model=num rows=1 cache=- cached_rows=0 " in lines[5]


def test_json_lines_carry_the_fields_as_keys() -> None:
    """What ``--log-format json`` prints for one access record (the formatter on a real record)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("mly.access.test")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(Keep())
    AccessLog(json=True, logger=logger).write(
        method="POST", path="/v1/api/model/m/eval", model="m", status=200, rows=4, cached_rows=3, cached=True,
        latency_us=250, client=("10.0.0.1", 5000),
    )
    line = orjson.loads(JsonFormatter().format(records[0]))
    assert records[0].__dict__[FIELDS]["cache"] == "partial"
    assert {k: line[k] for k in ("level", "logger", "message", "model", "rows", "cache", "cached_rows", "status",
                                 "latency_us", "client")} == {
        "level": "INFO", "logger": "mly.access.test", "message": "eval", "model": "m", "rows": 4,
        "cache": "partial", "cached_rows": 3, "status": 200, "latency_us": 250, "client": "10.0.0.1:5000",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
