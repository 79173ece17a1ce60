"""A malformed request is a stream error (RFC 9113 §8.1.1): its stream is reset with
PROTOCOL_ERROR (an oversized header block is answered 431) and every other stream on the
connection goes on. Go's client sends all of a process's requests over one connection."""

from __future__ import annotations

import h2.errors
import orjson
import pytest
from http2.h2_setup import ROW
from http2.h2client import RawH2
from hyperframe.frame import HeadersFrame
from live_server import LiveServer

EVAL = "/v1/api/model/sli/eval"
BODY = orjson.dumps(ROW)
JSON = (b"content-type", b"application/json")


def still_serves(client: RawH2) -> None:
    """A well-formed request on the same connection is answered, and the connection was never ended."""
    status, data = client.response(client.request("POST", EVAL, BODY, headers=(JSON,)))
    assert status == 200 and orjson.loads(data)["data"]["score"] == 21.5
    assert client.terminated is None


def reset_with_protocol_error(client: RawH2, sid: int) -> None:
    client.read_until(lambda: sid in client.reset or sid in client.ended or client.terminated is not None)
    assert client.terminated is None, f"the connection was ended: {client.terminated}"
    assert client.reset.get(sid) == h2.errors.ErrorCodes.PROTOCOL_ERROR, client.headers.get(sid)


@pytest.mark.parametrize("declared", [len(BODY) + 10, len(BODY) - 10])
def test_body_not_matching_content_length_resets_only_its_stream(h2server: LiveServer, declared: int) -> None:
    client = RawH2(h2server.port)
    try:
        other = client.request("POST", EVAL, BODY[:5], end=False, headers=(JSON,))  # open on the same connection
        sid = client.request("POST", EVAL, BODY, headers=(JSON, (b"content-length", str(declared).encode())))
        reset_with_protocol_error(client, sid)
        client.send(other, BODY[5:], end=True)
        status, data = client.response(other)
        assert status == 200 and orjson.loads(data)["data"]["score"] == 21.5
        still_serves(client)
    finally:
        client.close()


def test_content_length_on_a_request_without_body_resets_its_stream(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        reset_with_protocol_error(client, client.request("POST", EVAL, headers=(JSON, (b"content-length", b"20"))))
        still_serves(client)
    finally:
        client.close()


@pytest.mark.parametrize("values", [(b"ten",), (b"-1",), (b"45", b"46")])
def test_content_length_that_is_not_one_number_resets_its_stream(h2server: LiveServer,
                                                                   values: tuple[bytes, ...]) -> None:
    client = RawH2(h2server.port)
    try:
        fields = (JSON, *((b"content-length", value) for value in values))
        reset_with_protocol_error(client, client.request("POST", EVAL, BODY, headers=fields))
        still_serves(client)
    finally:
        client.close()


def test_oversized_header_block_is_answered_431(h2server: LiveServer) -> None:
    """Over SETTINGS_MAX_HEADER_LIST_SIZE (MaxHeaderBytes + 2048): 431, as Go answers. The block
    also adds a field to the HPACK table that the next request refers to by index, so the
    server must have decoded all of it to go on."""
    client = RawH2(h2server.port)
    try:  # once the client has acknowledged the limit, h2 would enforce it (connection error)
        client.read_until(lambda: client.conn.remote_settings.max_header_list_size is not None)
        probe = (b"x-probe", b"indexed")
        sid = client.request("GET", "/v1/api/health", headers=(probe, (b"x-big", b"a" * 12000)))
        client.read_until(lambda: sid in client.ended or sid in client.reset or client.terminated is not None)
        assert client.terminated is None, f"the connection was ended: {client.terminated}"
        assert int(client.headers[sid][b":status"]) == 431
        status, data = client.response(client.request("GET", "/v1/api/health", headers=(probe,)))
        assert status == 200 and orjson.loads(data) == {"sli": 1}
        still_serves(client)
    finally:
        client.close()


def test_duplicated_scheme_resets_its_stream(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        reset_with_protocol_error(client, client.request("GET", "/v1/api/health", headers=((b":scheme", b"http"),)))
        still_serves(client)
    finally:
        client.close()


def test_pseudo_header_in_trailers_resets_its_stream(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        sid = client.request("POST", EVAL, BODY, end=False, headers=(JSON,))
        client.conn.send_headers(sid, [(b":path", EVAL.encode())], end_stream=True)
        client.flush()
        reset_with_protocol_error(client, sid)
        still_serves(client)
    finally:
        client.close()


def test_trailers_without_end_stream_reset_their_stream(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        sid = client.request("POST", EVAL, BODY, end=False, headers=(JSON,))
        # h2's client refuses to send these: the frame by hand, encoded with its HPACK state.
        frame = HeadersFrame(sid, data=client.conn.encoder.encode([(b"x-checksum", b"0")]), flags=["END_HEADERS"])
        client.sock.sendall(frame.serialize())
        reset_with_protocol_error(client, sid)
        still_serves(client)
    finally:
        client.close()


def test_trailers_after_the_server_reset_the_stream_are_ignored(h2server: LiveServer) -> None:
    """A POST to the health check is answered 405 before its body is in, and the server stops the
    upload (RST_STREAM NO_ERROR). Trailers the client sent before that reached it arrive on a closed
    stream the server reset: ignored (RFC 9113 §5.1), not a connection error."""
    client = RawH2(h2server.port)
    try:
        sid = client.request("POST", "/v1/api/health", b"x", end=False, headers=(JSON,))
        client.read_until(lambda: sid in client.reset or client.terminated is not None)
        assert client.reset.get(sid) == h2.errors.ErrorCodes.NO_ERROR and int(client.headers[sid][b":status"]) == 405
        trailers = client.conn.encoder.encode([(b"x-checksum", b"0")])
        client.sock.sendall(HeadersFrame(sid, data=trailers, flags=["END_HEADERS", "END_STREAM"]).serialize())
        still_serves(client)
    finally:
        client.close()


def test_plain_trailers_are_accepted(h2server: LiveServer) -> None:
    client = RawH2(h2server.port)
    try:
        sid = client.request("POST", EVAL, BODY, end=False, headers=(JSON,))
        client.conn.send_headers(sid, [(b"x-checksum", b"0")], end_stream=True)
        client.flush()
        status, data = client.response(sid)
        assert status == 200 and orjson.loads(data)["data"]["score"] == 21.5
    finally:
        client.close()


def test_hpack_bomb_still_ends_the_connection(h2server: LiveServer) -> None:
    """A few KB that decode to over a MiB (one big field, then references to it): the
    connection ends (ENHANCE_YOUR_CALM) before the server holds the whole list."""
    client = RawH2(h2server.port)
    try:
        client.request("GET", "/v1/api/health", headers=((b"x-bomb", b"a" * 4000),) * 300)
        client.read_until(lambda: client.terminated is not None)
        assert client.terminated is not None
        assert client.terminated.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        client.close()
