"""HTTP/1.1 over a plain socket, for tests that control exactly what goes on the wire."""

from __future__ import annotations

import socket


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
