"""``ReadTimeoutMs`` over HTTP/2: a stream whose request body stalls is reset (CANCEL), the
other streams of its connection go on; the deadline is per line, so an NDJSON streaming PUT
whose lines come slowly keeps working."""

from __future__ import annotations

import time
from collections.abc import Iterator

import h2.errors
import orjson
import pytest
from http2.h2_setup import ENGINES, ROW, engine_env, h2_config
from http2.h2client import RawH2
from live_server import LiveServer

EVAL = "/v1/api/model/sli/eval"
BODY = orjson.dumps(ROW)
JSON = (b"content-type", b"application/json")
NDJSON = (b"content-type", b"application/x-ndjson")
READ_TIMEOUT_S = 1.5


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest, model_dirs: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = h2_config(model_dirs)
    config["Endpoint"].update(ReadTimeoutMs=int(READ_TIMEOUT_S * 1000), IdleTimeoutMs=30_000)
    with engine_env(request.param):
        live = LiveServer(config, tmp_path_factory.mktemp("read_timeout"), protocol="mly").start()
    yield live
    live.stop()


def read_for(client: RawH2, seconds: float, done: object = None) -> None:
    """Read (and answer PINGs, SETTINGS) for ``seconds`` or until ``done()``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (callable(done) and done()) and client.read():
        pass


def test_stalled_body_resets_only_its_stream(server: LiveServer) -> None:
    client = RawH2(server.port, timeout=0.2)
    try:
        stalled = client.request("POST", EVAL, BODY[:5], end=False, headers=(JSON,))
        read_for(client, 4 * READ_TIMEOUT_S, lambda: stalled in client.reset)
        assert client.reset.get(stalled) == h2.errors.ErrorCodes.CANCEL, "the stalled stream was not reset"
        assert client.terminated is None and not client.closed
        status, data = client.response(client.request("POST", EVAL, BODY, headers=(JSON,)))
        assert status == 200 and orjson.loads(data)["data"]["score"] == 21.5
    finally:
        client.close()


def test_a_line_trickled_in_pieces_is_cut_off(server: LiveServer) -> None:
    """The deadline counts every wait for the same line: sending a byte now and then does not extend it."""
    client = RawH2(server.port, timeout=0.2)
    try:
        line = orjson.dumps(ROW) + b"\n"
        sid = client.request("PUT", EVAL, line[:1], end=False, headers=(NDJSON,))
        for piece in line[1:]:
            read_for(client, READ_TIMEOUT_S / 3, lambda: sid in client.reset)
            if sid in client.reset:
                break
            client.send(sid, bytes([piece]))
        assert client.reset.get(sid) == h2.errors.ErrorCodes.CANCEL
    finally:
        client.close()


def test_slow_ndjson_lines_keep_the_stream(server: LiveServer) -> None:
    """Each line comes well within the read timeout, the stream as a whole takes longer."""
    client = RawH2(server.port, timeout=0.2)
    try:
        sid = client.request("PUT", EVAL, end=False, headers=(NDJSON,))
        count = 4
        for i in range(count):
            read_for(client, READ_TIMEOUT_S / 3)
            client.send(sid, orjson.dumps({**ROW, "i1": i}) + b"\n")
            read_for(client, 10, lambda i=i: client.data.get(sid, b"").count(b"\n") == i + 1)  # type: ignore[misc]
            assert sid not in client.reset
        client.send(sid, b"", end=True)
        status, data = client.response(sid)
        assert status == 200 and [orjson.loads(line)["index"] for line in data.splitlines()] == list(range(count))
    finally:
        client.close()
