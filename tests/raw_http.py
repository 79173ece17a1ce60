"""HTTP/1.1 over a plain socket, for tests that control exactly what goes on the wire."""

from __future__ import annotations

import socket
from typing import Any

import orjson


def read_response(sock: socket.socket, buffered: bytearray | None = None) -> bytes:
    """One whole answer (head and ``content-length`` body). ``buffered`` carries bytes
    already read past the previous answer (pipelining) and keeps what follows this one."""
    data = buffered if buffered is not None else bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-answer after {bytes(data)!r}"
        data += chunk
    head, _, _ = bytes(data).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    end = len(head) + 4 + length
    while len(data) < end:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        data += chunk
    answer = bytes(data[:end])
    del data[:end]
    return answer


def post_request(path: str, body: bytes, *extra_headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: t", "Content-Type: application/json", f"Content-Length: {len(body)}",
            *extra_headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def connect(url: str) -> socket.socket:
    """A keep-alive connection to ``http://127.0.0.1:PORT``, with Nagle off (answers are not delayed)."""
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def split(answer: bytes) -> tuple[int, dict[bytes, bytes], Any]:
    """Status, headers (lower-case names) and the JSON body of one answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {n.strip().lower(): v.strip() for n, _, v in (line.partition(b":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, orjson.loads(body)
