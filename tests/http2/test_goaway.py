"""A GOAWAY from the client: what Go's ``ClientConn.Shutdown`` sends before it waits for the
answers to its open streams. Those answers arrive; then the server closes the connection."""

from __future__ import annotations

import h2.errors
import orjson
from http2.h2_setup import ROW
from http2.h2client import RawH2
from hyperframe.frame import GoAwayFrame
from live_server import LiveServer

EVAL = "/v1/api/model/sli/eval"
BODY = orjson.dumps(ROW)


def goaway(client: RawH2) -> None:
    """Send GOAWAY (no server-initiated streams accepted) by hand: h2's own client refuses to
    read anything after sending one, which Go's client does not."""
    frame = GoAwayFrame(0)
    frame.last_stream_id = 0
    frame.error_code = h2.errors.ErrorCodes.NO_ERROR
    client.sock.sendall(frame.serialize())


def test_client_goaway_keeps_the_open_streams(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        whole = client.request("POST", EVAL, BODY, headers=((b"content-type", b"application/json"),))
        partial = client.request("POST", EVAL, BODY[:5], end=False, headers=((b"content-type", b"application/json"),))
        goaway(client)
        client.send(partial, BODY[5:], end=True)  # its body may still come after the GOAWAY
        seen = client.read_frames_until_closed()  # the server closes once both are answered, as Go's does
        for sid in (whole, partial):
            assert sid not in seen.reset and sid in seen.ended, seen
            assert seen.status[sid] == 200 and orjson.loads(seen.data[sid])["data"]["score"] == 21.5
        assert seen.goaway is not None and seen.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        assert seen.goaway.last_stream_id == partial
    finally:
        client.close()


def test_client_goaway_on_an_idle_connection_closes_it(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        assert client.response(client.request("GET", "/v1/api/health"))[0] == 200
        goaway(client)
        seen = client.read_frames_until_closed()
        assert seen.goaway is not None and seen.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
    finally:
        client.close()
