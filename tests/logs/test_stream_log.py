"""Go's per-model ``Stream`` log: config errors name the key, a real server writes one JSON line
per sampled request, files rotate, and a stuck disk drops lines instead of holding requests."""

from __future__ import annotations

import os
import random
import re
import stat
from pathlib import Path

import orjson
import pytest
import yaml
from live_server import LiveServer

from mly.common.request import EvalRequest
from mly.config import load_config, parse_config
from mly.config.schema import StreamConfig, StreamRotation
from mly.errors import ConfigError
from mly.logs.stream import StreamLog

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+00")


def model(stream: object) -> dict:
    return {"Models": [{"ID": "m", "URL": "/m", "Stream": stream}]}


@pytest.mark.parametrize(("stream", "key", "words"), [
    ({}, "Models[0].Stream.URL", "is required"),
    ({"URL": "s3://bucket/log"}, "Models[0].Stream.URL", "local file"),
    ({"URL": "/tmp/x", "SampleRate": 0}, "Models[0].Stream.SampleRate", "> 0 and <= 1"),
    ({"URL": "/tmp/x", "SampleRate": 1.5}, "Models[0].Stream.SampleRate", "> 0 and <= 1"),
    ({"URL": "/tmp/x", "QueueSize": 0}, "Models[0].Stream.QueueSize", ">= 1"),
    ({"URL": "/tmp/x", "Rotation": {}}, "Models[0].Stream.Rotation", "EveryMs or MaxEntries"),
    ({"URL": "/tmp/x", "Rotation": {"EveryMs": -1}}, "Models[0].Stream.Rotation.EveryMs", ">= 0"),
    ({"URL": "/tmp/x", "Rotation": {"MaxEntries": 5, "Keep": -2}}, "Models[0].Stream.Rotation.Keep", ">= 0"),
    ({"URL": "/tmp/x", "Codec": "gzip"}, "Models[0].Stream.Codec", "unknown"),
    ({"URL": "/tmp/x", "SampleRate": "half"}, "Models[0].Stream.SampleRate", "number"),
    ("/tmp/x", "Models[0].Stream", "mapping"),
])
def test_bad_stream_config_names_the_key(stream: object, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(model(stream))
    assert str(info.value).startswith(f"{key}: "), str(info.value)
    assert words in str(info.value)


def test_stream_config_shape_and_relative_url(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(model({"url": "logs/m.jsonl", "rotation": {"everyMs": 60000, "maxEntries": 10},
                                          "sampleRate": 0.25})))
    stream = load_config(path).models[0].stream
    assert stream == StreamConfig(url=str(tmp_path / "logs" / "m.jsonl"),
                                  rotation=StreamRotation(every_ms=60000, max_entries=10), sample_rate=0.25)
    assert load_config(path).models[0].stream is not None
    absolute = parse_config(model({"URL": "file:///var/log/m.jsonl"}), base_dir=tmp_path).models[0].stream
    assert absolute is not None and absolute.url == "/var/log/m.jsonl"


def read_lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_real_server_logs_requests_and_answers(model_dirs: dict[str, str], tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "sli.jsonl"
    config = {
        "Models": [{"ID": "sli", "URL": model_dirs["keras"], "DataStore": "mem",
                    "Inputs": [{"Name": "fl", "Precision": 2}], "Stream": {"URL": str(log_path)}},
                   {"ID": "ops", "URL": model_dirs["ops"]}],  # no Stream: nothing logged for it
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 4}}],
    }
    server = LiveServer(config, tmp_path).start()
    row = {"sa": "a", "sl": "b", "i1": 4, "fl": 1.5}
    batch = {"batch_size": 2, "sa": ["a", "c"], "sl": ["b"], "i1": [4, 5], "fl": [1.5, 2.25]}
    try:
        assert server.registry.get("ops").stream_log is None
        with server.client() as client:
            first = client.post("/v1/api/model/sli/eval", json=row).json()
            second = client.post("/v1/api/model/sli/eval", json=row).json()  # a cache hit is logged too
            many = client.post("/v1/api/model/sli/eval", json=batch).json()
            assert client.post("/v1/api/model/sli/eval", json={"sa": 1}).status_code == 400  # not logged
            assert client.post("/v1/api/model/ops/eval", json={"sa": "a", "ik": 1}).status_code == 200
    finally:
        server.stop()
        server.registry.close()  # what the server's shutdown does: the writer drains and closes the file
    stats = server.registry.get("sli").stream_log.stats()
    assert stats["written"] == 3 and stats["dropped"] == 0 and stats["errors"] == 0, stats
    lines = read_lines(log_path)
    assert len(lines) == 3
    for line, sent, answer in ((lines[0], row, first), (lines[1], row, second)):
        assert {k: line[k] for k in sent} == sent
        assert line["dict_hash"] == answer["dictHash"]
        assert isinstance(line["eval_duration"], int) and line["eval_duration"] >= 0
        assert TIMESTAMP.fullmatch(line["timestamp"]), line["timestamp"]
        assert {k: line[k] for k in answer["data"]} == answer["data"]
    assert lines[2]["batch_size"] == 2 and lines[2]["sa"] == ["a", "c"]
    for name in many["data"][0]:
        assert lines[2][name] == [r[name] for r in many["data"]]


def request(i: int) -> EvalRequest:
    return EvalRequest({"i": i})


def test_sampling_logs_the_drawn_fraction(tmp_path: Path) -> None:
    cfg = StreamConfig(url=str(tmp_path / "s.jsonl"), sample_rate=0.3)
    log = StreamLog(cfg, model_id="m", rng=random.Random(7))
    for i in range(400):
        log.offer(request(i), [{"p": i}], 1, 10)
    assert log.close()
    draws = random.Random(7)
    kept = [i for i in range(400) if draws.random() < 0.3]
    assert [line["i"] for line in read_lines(tmp_path / "s.jsonl")] == kept
    assert log.stats()["sampled_out"] == 400 - len(kept) and log.stats()["written"] == len(kept)


def test_rotation_by_entries_keeps_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    log = StreamLog(StreamConfig(url=str(path), rotation=StreamRotation(max_entries=2, keep=2)), model_id="m")
    for i in range(7):
        log.offer(request(i), [{"p": i}], 1, 10)
    assert log.close()
    assert log.stats()["rotations"] == 3
    rotated = sorted(p for p in tmp_path.iterdir() if p.name.startswith("s.jsonl."))
    assert len(rotated) == 2  # the oldest of three was removed
    kept = sorted(line["i"] for p in rotated for line in read_lines(p))
    assert kept == [2, 3, 4, 5] and [line["i"] for line in read_lines(path)] == [6]


def test_rotation_by_age(tmp_path: Path) -> None:
    import time

    path = tmp_path / "s.jsonl"
    log = StreamLog(StreamConfig(url=str(path), rotation=StreamRotation(every_ms=100)), model_id="m")
    log.offer(request(0), [{"p": 0}], 1, 10)
    deadline = time.monotonic() + 10
    while log.stats()["rotations"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # the writer rotates an old file on its own, without a new line
    log.offer(request(1), [{"p": 1}], 1, 10)
    assert log.close()
    assert log.stats()["rotations"] == 1
    rotated = [p for p in tmp_path.iterdir() if p.name.startswith("s.jsonl.")]
    assert len(rotated) == 1 and [line["i"] for line in read_lines(rotated[0])] == [0]
    assert [line["i"] for line in read_lines(path)] == [1]


def test_a_stuck_disk_drops_lines_and_never_blocks(tmp_path: Path) -> None:
    """A FIFO nobody reads is a disk that stopped: the writer thread blocks in write() once the
    pipe is full, the queue fills, and further lines are dropped and counted."""
    path = tmp_path / "stuck"
    os.mkfifo(path)
    assert stat.S_ISFIFO(os.stat(path).st_mode)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # present, so the log can open it; never reads
    try:
        log = StreamLog(StreamConfig(url=str(path), queue_size=4), model_id="m")
        big = {"payload": "x" * 4096}
        for i in range(200):  # ~800 KB: far past the pipe's buffer
            log.offer(EvalRequest({"i": i, **big}), [{"p": i}], 1, 10)  # returns at once every time
        stats = log.stats()
        assert stats["dropped"] > 0 and stats["offered"] == 200, stats
        assert stats["queued"] <= 4
        assert stats["written"] + stats["dropped"] + stats["queued"] <= 200
    finally:
        # Start reading: the writer gets unstuck, finishes and closes.
        os.set_blocking(reader, True)
        import threading

        drained = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(reader, 65536), b"")],
                                   daemon=True)
        drained.start()
        assert log.close(timeout_s=30)
        drained.join(30)
        os.close(reader)
    assert log.stats()["written"] + log.stats()["dropped"] == 200


def test_an_unwritable_stream_url_stops_the_start(model_dirs: dict[str, str], tmp_path: Path) -> None:
    from mly.errors import ModelLoadError
    from mly.server import build_app

    blocked = tmp_path / "file"
    blocked.write_text("")
    config = parse_config({"Models": [{"ID": "ops", "URL": model_dirs["ops"],
                                       "Stream": {"URL": str(blocked / "under-a-file.jsonl")}}]})
    with pytest.raises(ModelLoadError) as info:
        build_app(config)
    assert "model 'ops'" in str(info.value) and "Stream.URL" in str(info.value)
