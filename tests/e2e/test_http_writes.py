"""Each HTTP/1.1 answer leaves the server in one TCP segment (head and body written together).

Counted by the kernel, not by a stand-in: ``TCP_INFO``'s ``tcpi_data_segs_in`` on the
client's socket is the number of segments with data it received. On loopback with
``TCP_NODELAY`` (uvloop's default), every server write of a small answer is a segment
of its own, so two writes per answer would count two.
"""

from __future__ import annotations

import socket
import struct
import sys

import orjson
import pytest
from live_server import LiveServer
from raw_http import read_response

# struct tcp_info (linux/tcp.h): tcpi_data_segs_in follows 8 bytes of u8 fields, 24 u32,
# 4 u64, then segs_out, segs_in, notsent_bytes, min_rtt (Linux >= 4.6).
_DATA_SEGS_IN = 8 + 24 * 4 + 4 * 8 + 4 * 4

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO layout is Linux's")


def data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN)[0])


@pytest.mark.parametrize("request_bytes", [
    b"GET /v1/api/health HTTP/1.1\r\nHost: t\r\n\r\n",  # Starlette route
    b"POST /v1/api/model/sli/eval HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s",  # the eval fast path
    b"GET /v1/api/model/nope/eval HTTP/1.1\r\nHost: t\r\n\r\n",  # an error answer
])
def test_every_answer_is_one_segment(server: LiveServer, request_bytes: bytes) -> None:
    if b"%d" in request_bytes:
        body = orjson.dumps({"sa": "a", "sl": "b", "i1": 10, "fl": 1.0})
        request_bytes = request_bytes % (len(body), body)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(5):
            sock.sendall(request_bytes)
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 ")
        assert data_segments_in(sock) == 5
