"""NDJSON streaming eval over HTTP/1.1 chunked bodies and HTTP/2 streams."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from http2.h2_setup import BUFFER_SIZE, ROW
from http2.h2client import RawH2
from live_server import LiveServer

EVAL = "/v1/api/model/sli/eval"
NDJSON = {"Content-Type": "application/x-ndjson"}

#: Request lines with bad ones in the middle: malformed JSON, a wrong type, a batch shape error.
LINES = [
    orjson.dumps({**ROW, "i1": 1}),
    b"{not json",
    orjson.dumps({**ROW, "i1": 2}),
    orjson.dumps({**ROW, "i1": "two"}),
    b"",  # blank lines are skipped and not counted
    orjson.dumps({"batch_size": 2, "sa": ["a", "b"], "sl": ["b"], "i1": [1, 2], "fl": [0.5, 1.5]}),
    orjson.dumps({**ROW, "i1": 3}),
]
BAD = {1: "malformed JSON", 3: "i1"}


def answers(text: bytes) -> dict[int, dict[str, Any]]:
    lines = [orjson.loads(line) for line in text.split(b"\n") if line]
    by_index = {line["index"]: line for line in lines}
    assert len(by_index) == len(lines), "an index was answered twice"
    return by_index


def check(server: LiveServer, got: dict[int, dict[str, Any]]) -> None:
    requests = [line for line in LINES if line]
    assert sorted(got) == list(range(len(requests)))
    with server.client() as client:
        for index, line in enumerate(requests):
            if index in BAD:
                assert got[index]["status"] == "error" and got[index]["code"] == 400
                assert BAD[index] in got[index]["error"]
            else:
                single = client.post(EVAL, content=line).json()
                assert got[index]["status"] == "ok", got[index]
                assert got[index]["data"] == single["data"]
                assert got[index]["dictHash"] == single["dictHash"]


def body_chunks() -> Iterator[bytes]:
    for line in LINES:  # one chunk per line, split oddly: lines must not depend on chunk boundaries
        data = line + b"\n"
        yield data[:3]
        yield data[3:]


@pytest.mark.parametrize("http2", [False, True], ids=["http1-chunked", "http2"])
def test_stream_with_bad_lines_in_the_middle(h2server: LiveServer, http2: bool) -> None:
    with httpx.Client(base_url=h2server.url, http1=not http2, http2=http2, timeout=30) as client:
        response = client.put(EVAL, content=body_chunks(), headers=NDJSON)
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert response.headers["content-type"] == "application/x-ndjson"
    check(h2server, answers(response.content))


def test_plain_json_put_is_still_a_post(h2server: LiveServer) -> None:
    with h2server.client() as client:
        put = client.put(EVAL, json=ROW)
        assert put.headers["content-type"] == "application/json"
        assert put.json()["data"] == client.post(EVAL, json=ROW).json()["data"]


def test_unknown_model_is_a_json_404(h2server: LiveServer) -> None:
    with h2server.client() as client:
        response = client.put("/v1/api/model/nope/eval", content=LINES[0], headers=NDJSON)
    assert response.status_code == 404 and "nope" in response.json()["error"]


def test_a_line_longer_than_buffer_size_is_an_error_line(h2server: LiveServer) -> None:
    huge = b'{"sa":"' + b"x" * (BUFFER_SIZE + 10) + b'"}'
    body = LINES[0] + b"\n" + huge + b"\n" + LINES[2] + b"\n"
    with h2server.client() as client:
        got = answers(client.put(EVAL, content=body, headers=NDJSON).content)
    assert got[0]["status"] == "ok" and got[2]["status"] == "ok"
    assert got[1]["code"] == 413 and "BufferSize" in got[1]["error"]


def test_lines_are_served_from_the_cache(h2server: LiveServer) -> None:
    row = orjson.dumps({**ROW, "i1": 4, "fl": 3.25})
    counters = h2server.registry.caches["mem"].counters
    with h2server.client() as client:
        client.post(EVAL, content=row)
        hits = counters.hits_memory
        got = answers(client.put(EVAL, content=row + b"\n" + row + b"\n", headers=NDJSON).content)
    assert [got[0]["status"], got[1]["status"]] == ["ok", "ok"]
    assert counters.hits_memory == hits + 2


def read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    """One chunked-body line of the answer (chunk framing stripped by looking for JSON lines)."""
    while True:
        for raw in bytes(buffer).split(b"\r\n"):
            if raw.startswith(b"{") and raw.endswith(b"}\n"):
                buffer[:] = bytes(buffer).split(raw, 1)[1]
                return raw
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        buffer += chunk


def test_full_duplex_over_http1(h2server: LiveServer) -> None:
    """Each answer arrives while the request body is still open: line 2 is sent only after
    answer 1 was read."""
    with socket.create_connection(("127.0.0.1", h2server.port), timeout=10) as sock:
        sock.sendall(f"PUT {EVAL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        buffer = bytearray()
        for i in range(3):
            line = orjson.dumps({**ROW, "i1": i}) + b"\n"
            sock.sendall(b"%x\r\n%s\r\n" % (len(line), line))
            answer = orjson.loads(read_line(sock, buffer))
            assert answer["index"] == i and answer["status"] == "ok"
        sock.sendall(b"0\r\n\r\n")
        while not bytes(buffer).endswith(b"0\r\n\r\n"):
            buffer += sock.recv(65536)


def test_full_duplex_over_http2(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        sid = client.request("PUT", EVAL, headers=((b"content-type", b"application/x-ndjson"),), end=False)
        for i in range(3):
            client.send(sid, orjson.dumps({**ROW, "i1": i}) + b"\n")
            client.read_until(lambda i=i: client.data.get(sid, b"").count(b"\n") == i + 1)  # type: ignore[misc]
            assert orjson.loads(bytes(client.data[sid]).split(b"\n")[i])["index"] == i
        client.send(sid, b"", end=True)
        status, data = client.response(sid)
        assert status == 200 and data.count(b"\n") == 3
    finally:
        client.close()


def test_slow_reader_gets_every_line(h2server: LiveServer) -> None:
    """A tiny receive window and slow reads: the server waits on flow control (and stops
    evaluating past StreamMaxInFlight), every answer still arrives whole."""
    client = RawH2(h2server.port, window=512, timeout=1)
    try:
        count = 40
        body = b"".join(orjson.dumps({**ROW, "i1": i % 5, "fl": i / 8}) + b"\n" for i in range(count))
        sid = client.request("PUT", EVAL, body, headers=((b"content-type", b"application/x-ndjson"),))
        deadline = time.monotonic() + 60
        while sid not in client.ended and sid not in client.reset and time.monotonic() < deadline:
            time.sleep(0.02)
            client.read()
        status, data = client.response(sid)
        got = answers(data)
        assert status == 200 and sorted(got) == list(range(count))
        assert all(line["status"] == "ok" for line in got.values())
    finally:
        client.close()
