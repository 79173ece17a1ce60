"""``Upgrade: h2c`` on HTTP/1.1 is declined (RFC 9113 §3.1 deprecates it): the request is
served as HTTP/1.1 with its body whole; and curl's own HTTP/2 modes."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time

import orjson
import pytest
from http2.h2_setup import ROW
from live_server import LiveServer

EVAL = "/v1/api/model/sli/eval"
SETTINGS = b"AAMAAABkAARAAAAAAAIAAAAA"  # what curl sends in HTTP2-Settings


def upgrade_request(body: bytes, *, connection: bytes = b"Upgrade, HTTP2-Settings") -> tuple[bytes, bytes]:
    head = (b"POST " + EVAL.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: " + connection + b"\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: " + SETTINGS + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    return head, body


def read_response(sock: socket.socket) -> tuple[bytes, dict[bytes, bytes], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in lines)}
    length = int(headers[b"content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, headers, rest[:length]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def uvicorn_log() -> Records:
    handler = Records()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield handler  # type: ignore[misc]
    logger.removeHandler(handler)


def expected(server: LiveServer, row: dict[str, object]) -> object:
    with server.client() as client:
        return client.post(EVAL, json=row).json()["data"]


@pytest.mark.parametrize("split", [False, True], ids=["one-packet", "head-then-body"])
def test_upgrade_is_declined_and_the_body_arrives_whole(h2server: LiveServer, uvicorn_log: Records,
                                                        split: bool) -> None:
    row = {**ROW, "i1": 3}
    head, body = upgrade_request(orjson.dumps(row))
    with socket.create_connection(("127.0.0.1", h2server.port), timeout=10) as sock:
        if split:
            sock.sendall(head)
            time.sleep(0.05)
            sock.sendall(body)
        else:
            sock.sendall(head + body)
        status, _, answer = read_response(sock)
        assert status == b"HTTP/1.1 200 OK", answer
        assert orjson.loads(answer)["data"] == expected(h2server, row)
        # Still a keep-alive HTTP/1.1 connection: the next request is served on it.
        sock.sendall(b"GET /v1/api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[2] == b'{"sli":1}'
    assert not [m for m in uvicorn_log.messages if "WebSocket" in m or "upgrade" in m.lower()]


def test_upgrade_keeps_other_connection_options(h2server: LiveServer) -> None:
    """``Connection: close, Upgrade, HTTP2-Settings``: the upgrade goes, ``close`` stays."""
    head, body = upgrade_request(orjson.dumps(ROW), connection=b"close, Upgrade, HTTP2-Settings")
    with socket.create_connection(("127.0.0.1", h2server.port), timeout=10) as sock:
        sock.sendall(head + body)
        status, headers, answer = read_response(sock)
        assert status == b"HTTP/1.1 200 OK" and orjson.loads(answer)["status"] == "ok"
        assert headers.get(b"connection") == b"close"


def test_upgrade_on_a_later_request_is_a_clear_400(h2server: LiveServer) -> None:
    head, body = upgrade_request(orjson.dumps(ROW))
    with socket.create_connection(("127.0.0.1", h2server.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == b"HTTP/1.1 200 OK"
        sock.sendall(head + body)
        status, _, answer = read_response(sock)
        assert status.startswith(b"HTTP/1.1 400") and b"first request" in answer


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl is not installed")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    if "HTTP2" not in version:
        pytest.skip("this curl has no HTTP/2 support")
    return subprocess.run([path, "-sS", "--max-time", "20", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("mode", ["--http2", "--http2-prior-knowledge"])
def test_curl_post_bodies_arrive_whole(h2server: LiveServer, mode: str) -> None:
    row = {**ROW, "sa": "c", "fl": 2.25}
    done = curl(mode, "-w", "\n%{http_version}", "-H", "Content-Type: application/json",
                "-d", orjson.dumps(row).decode(), h2server.url + EVAL)
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition("\n")
    assert version == ("1.1" if mode == "--http2" else "2")
    assert orjson.loads(body)["data"] == expected(h2server, row)
