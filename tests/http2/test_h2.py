"""Cleartext HTTP/2 with prior knowledge (how Go's mly client talks): real clients, a real server."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import h2.errors
import h2.events
import h2.settings
import httpx
import orjson
import pytest
from h2.frame_buffer import FrameBuffer
from http2.h2_setup import IDLE_TIMEOUT_MS, MAX_STREAMS, ROW, STREAM_WINDOW, engine_env, h2_config
from http2.h2client import RawH2
from hyperframe.frame import DataFrame, HeadersFrame
from live_server import LiveServer

EVAL = "/v1/api/model/sli/eval"


def h2_client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, http1=False, http2=True, timeout=30)


def test_eval_meta_and_errors_over_h2_match_http1(h2server: LiveServer) -> None:
    with h2_client(h2server) as h2c, httpx.Client(base_url=h2server.url, timeout=30) as h1c:
        for method, kwargs in (("POST", {"json": ROW}), ("PUT", {"json": ROW}), ("GET", {"params": ROW})):
            over_h2 = h2c.request(method, EVAL, **kwargs)
            over_h1 = h1c.request(method, EVAL, **kwargs)
            assert over_h2.http_version == "HTTP/2" and over_h1.http_version == "HTTP/1.1"
            assert over_h2.status_code == 200, over_h2.text
            assert over_h2.json()["data"] == over_h1.json()["data"]
            assert over_h2.json()["data"]["score"] == 21.5
        meta = h2c.get("/v1/api/model/sli/meta/config")
        assert meta.status_code == 200 and meta.json()["ID"] == "mem"
        assert h2c.get("/v1/api/health").json() == {"sli": 1}
        missing = h2c.post("/v1/api/model/nope/eval", json=ROW)
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        bad = h2c.post(EVAL, content=b"{not json")
        assert bad.status_code == 400 and bad.json()["status"] == "error"


def test_bodies_larger_than_the_windows_arrive_whole(h2server: LiveServer) -> None:
    """A request body and an answer several times the 64 KiB stream window: both sides wait for
    WINDOW_UPDATE, nothing is lost or truncated."""
    rows = 12000
    batch = {"batch_size": rows, "sa": ["a", "b", "c", "zz"] * (rows // 4), "sl": ["b"] * rows,
             "i1": list(range(rows)), "fl": [0.5] * rows}
    body = orjson.dumps(batch)
    assert len(body) > 2 * STREAM_WINDOW
    with h2_client(h2server) as h2c, httpx.Client(base_url=h2server.url, timeout=30) as h1c:
        over_h2 = h2c.post(EVAL, content=body)
        over_h1 = h1c.post(EVAL, content=body)
    assert over_h2.status_code == 200, over_h2.text
    assert len(over_h2.content) > 2 * STREAM_WINDOW
    assert over_h2.json()["data"] == over_h1.json()["data"]
    assert len(over_h2.json()["data"]) == rows


def test_many_concurrent_streams_on_one_connection(h2server: LiveServer) -> None:
    """MAX_CONCURRENT_STREAMS requests at a time, ten rounds, on one connection: every answer
    matches its own request. (Go's client queues past the limit by itself; httpx's does not
    shrink its stream count when SETTINGS lower it, hence the semaphore.)"""

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=1)
        gate = asyncio.Semaphore(MAX_STREAMS)
        async with httpx.AsyncClient(base_url=h2server.url, http1=False, http2=True, limits=limits,
                                     timeout=30) as client:

            async def one(i: int) -> httpx.Response:
                async with gate:
                    return await client.post(EVAL, json={**ROW, "i1": i % 7, "fl": i / 4})

            return await asyncio.gather(*(one(i) for i in range(10 * MAX_STREAMS)))

    responses = asyncio.run(main())
    with httpx.Client(base_url=h2server.url, timeout=30) as h1c:
        for i, response in enumerate(responses):
            assert response.status_code == 200 and response.http_version == "HTTP/2"
            assert response.json()["data"] == h1c.post(EVAL, json={**ROW, "i1": i % 7, "fl": i / 4}).json()["data"]


def test_settings_and_streams_up_to_the_limit_on_a_raw_connection(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        client.read_until(lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in client.events))
        assert client.conn.remote_settings.max_concurrent_streams == MAX_STREAMS
        assert client.conn.remote_settings.initial_window_size == STREAM_WINDOW
        assert client.conn.remote_settings.enable_push == 0
        body = orjson.dumps(ROW)
        sids = [client.request("POST", EVAL, body, headers=((b"content-type", b"application/json"),))
                for _ in range(MAX_STREAMS)]
        for sid in sids:
            status, data = client.response(sid)
            assert status == 200 and orjson.loads(data)["data"]["score"] == 21.5
    finally:
        client.close()


def test_malformed_request_is_a_stream_error_and_the_connection_goes_on(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        bad = client.request("GET", "/v1/api/health", headers=((b"X-Upper", b"1"),))
        no_path = client.conn.get_next_available_stream_id()
        client.conn.send_headers(no_path, [(b":method", b"GET"), (b":scheme", b"http")], end_stream=True)
        client.flush()
        crlf = client.request("GET", "/v1/api/health", headers=((b"x-split", b"a\r\nx-injected: 1"),))
        client.read_until(lambda: all(sid in client.reset for sid in (bad, no_path, crlf)))
        for sid in (bad, no_path, crlf):
            assert client.reset[sid] == h2.errors.ErrorCodes.PROTOCOL_ERROR
        status, data = client.response(client.request("GET", "/v1/api/health"))
        assert status == 200 and orjson.loads(data) == {"sli": 1}
    finally:
        client.close()


def test_idle_connection_gets_goaway_and_is_closed(h2server: LiveServer) -> None:
    client = RawH2(h2server.port, timeout=0.2)
    try:
        assert client.response(client.request("GET", "/v1/api/health"))[0] == 200
        deadline = time.monotonic() + 10 * IDLE_TIMEOUT_MS / 1000
        while not client.closed and time.monotonic() < deadline:
            client.read()
        assert client.terminated is not None and client.terminated.error_code == h2.errors.ErrorCodes.NO_ERROR
        assert client.closed
    finally:
        client.close()


def test_graceful_stop_sends_goaway_and_finishes_open_streams(engine: str, model_dirs: dict[str, str],
                                                              tmp_path: Path) -> None:
    """uvicorn's stop: an idle HTTP/2 connection gets GOAWAY and is closed; a stream still
    sending its request is answered first; the server stops without waiting for a timeout."""
    with engine_env(engine):
        live = LiveServer(h2_config(model_dirs), tmp_path, protocol="mly").start()
    idle, busy = RawH2(live.port), RawH2(live.port)
    try:
        assert idle.response(idle.request("GET", "/v1/api/health"))[0] == 200
        sid = busy.request("POST", EVAL, orjson.dumps(ROW)[:5], end=False)  # the body is not finished
        time.sleep(0.2)
        stopper = threading.Thread(target=live.stop)
        stopper.start()
        idle.read_until(lambda: idle.closed, limit=50)
        assert idle.terminated is not None and idle.terminated.error_code == h2.errors.ErrorCodes.NO_ERROR
        busy.read_until(lambda: busy.terminated is not None, limit=50)
        assert busy.terminated is not None and busy.terminated.last_stream_id == sid
        # h2's client state machine refuses to send after GOAWAY (Go's client goes on with the
        # streams the GOAWAY kept); finish the body and read the answer frame by frame.
        busy.sock.sendall(DataFrame(sid, data=orjson.dumps(ROW)[5:], flags=["END_STREAM"]).serialize())
        frames = FrameBuffer(server=False)
        frames.max_frame_size = 1 << 24
        status, data, ended = 0, b"", False
        while not ended:
            chunk = busy.sock.recv(65536)
            assert chunk, "closed before the answer"
            frames.add_data(chunk)
            for frame in frames:
                if frame.stream_id != sid:
                    continue
                if isinstance(frame, HeadersFrame):
                    status = int(dict(busy.conn.decoder.decode(frame.data, raw=True))[b":status"])
                elif isinstance(frame, DataFrame):
                    data += frame.data
                ended = ended or "END_STREAM" in frame.flags
        assert status == 200 and orjson.loads(data)["data"]["score"] == 21.5
        assert busy.sock.recv(65536) == b""  # closed once its last stream is answered
        stopper.join(timeout=15)
        assert not stopper.is_alive()
    finally:
        idle.close()
        busy.close()
        live.stop()


def test_header_fields_over_the_advertised_size_are_refused(h2server: LiveServer, engine: str) -> None:
    """SETTINGS_MAX_HEADER_LIST_SIZE is MaxHeaderBytes + 2048. A request past it gets 431 on both
    engines, as from Go's server, and the connection goes on. Neither builds the request."""
    client = RawH2(h2server.port, timeout=1)
    try:
        client.read_until(lambda: len(client.events) > 0)  # the server's SETTINGS, acknowledged (h2 waits for that)
        sid = client.request("GET", "/v1/api/health", headers=((b"x-big", b"a" * 20000),))
        client.read_until(lambda: sid in client.ended or sid in client.reset or client.terminated is not None,
                          limit=20)
        assert sid in client.ended and client.headers[sid][b":status"] == b"431"
        status, data = client.response(client.request("GET", "/v1/api/health"))
        assert status == 200 and orjson.loads(data) == {"sli": 1}
    finally:
        client.close()


def test_an_eval_answer_that_fails_is_a_500_and_the_connection_goes_on(h2server: LiveServer, engine: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The nghttp2 engine answers eval POSTs through ``EvalFastPath.answer_post``, which turns every
    request error into an answer; a bug there must still answer the stream. The fault is made with a
    stand-in ``answer_post`` (nothing a client sends can cause it)."""
    if engine != "nghttp2":
        pytest.skip("the h2 engine sends eval POSTs through the ASGI app")
    from mly.http.fast import EvalFastPath

    async def failing(self: EvalFastPath, path: str, body: bytes) -> tuple[int, bytes]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(EvalFastPath, "answer_post", failing)
    client = RawH2(h2server.port, timeout=1)
    try:
        sid = client.request("POST", EVAL, orjson.dumps({**ROW, "fl": 9.87}))  # a row nobody cached: answer_post runs
        client.read_until(lambda: sid in client.ended or sid in client.reset, limit=10)  # unanswered: fails in 10 s
        status, data = client.response(sid)
        assert status == 500 and orjson.loads(data)["status"] == "error"
        monkeypatch.undo()
        assert client.response(client.request("GET", "/v1/api/health"))[0] == 200
    finally:
        client.close()
