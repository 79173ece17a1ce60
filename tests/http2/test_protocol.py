"""The connection protocol on its own (a tiny ASGI app, no models): the first-bytes check runs
once per connection, a preface split into single bytes is still HTTP/2, and HTTP2 off means
HTTP/1.1 only; the Endpoint keys that configure it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from http2.h2_setup import engine_env
from http2.h2client import RawH2
from redis_server import free_port

from mly.config import parse_config
from mly.errors import ConfigError
from mly.http.h2limits import PREFACE, H2Settings
from mly.http.protocol import MlyHttpProtocol, MlyUvicornConfig, h2_settings, protocol_class


async def tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = f"{scope['http_version']} {scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve(settings: H2Settings, engine: str = "h2") -> Iterator[int]:
    port = free_port()
    with engine_env(engine):
        http = protocol_class(settings)
    server = uvicorn.Server(MlyUvicornConfig(tiny_app, host="127.0.0.1", port=port, loop="uvloop",
                                             http=http, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def port(engine: str) -> Iterator[int]:
    yield from serve(H2Settings(), engine)


@pytest.fixture(scope="module")
def h1_only_port() -> Iterator[int]:
    yield from serve(H2Settings(enabled=False))


def get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while not data.endswith(path.encode()):
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def test_first_bytes_are_looked_at_once_per_connection(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    looking = MlyHttpProtocol.data_received

    def counting(self: MlyHttpProtocol, data: bytes) -> None:
        nonlocal calls
        calls += 1
        looking(self, data)

    monkeypatch.setattr(MlyHttpProtocol, "data_received", counting)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for i in range(50):
            assert get(sock, f"/r{i}").startswith(b"HTTP/1.1 200")
    assert calls == 1  # later requests go straight to uvicorn's parser


def test_preface_in_single_bytes_is_http2(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for byte in PREFACE:
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        sock.sendall(bytes.fromhex("000000040000000000"))  # empty SETTINGS
        answer = sock.recv(4096)
        assert answer[3] == 0x04  # the server's SETTINGS frame, not an HTTP/1.1 status line
    client = RawH2(port)
    try:
        status, body = client.response(client.request("GET", "/over-h2"))
        assert status == 200 and body == b"2 GET /over-h2"
    finally:
        client.close()


def test_http2_off_serves_http1_only(h1_only_port: int) -> None:
    with socket.create_connection(("127.0.0.1", h1_only_port), timeout=5) as sock:
        sock.sendall(PREFACE)
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", h1_only_port), timeout=5) as sock:
        assert get(sock, "/still-h1").endswith(b"1.1 GET /still-h1")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("HTTP2MaxConcurrentStreams", 0, "must be >= 1"),
    ("HTTP2StreamWindow", 1000, "65535..2147483647"),
    ("HTTP2ConnectionWindow", 2**31, "65535..2147483647"),
    ("IdleTimeoutMs", -1, "must be >= 0"),
    ("StreamMaxInFlight", 0, "must be >= 1"),
    ("HTTP2", "yes", "true or false"),
])
def test_bad_endpoint_values_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_config({"Models": [{"ID": "m", "URL": "/m"}], "Endpoint": {key: value}})
    assert f"Endpoint.{key}" in str(err.value)


def test_the_largest_accepted_limits_still_serve_http2() -> None:
    """The upper bounds are real: at them every h2c connection still works (one more is refused at
    load, see tests/config/test_ranges.py; past 32 bits the server's SETTINGS frame could not be sent)."""
    config = parse_config({"Models": [{"ID": "m", "URL": "/m"}], "Endpoint": {
        "HTTP2MaxConcurrentStreams": 2**32 - 1, "MaxHeaderBytes": 2**32 - 1 - 2048}})
    for port in serve(h2_settings(config.endpoint)):
        client = RawH2(port)
        try:
            status, body = client.response(client.request("GET", "/at-the-limits"))
            assert status == 200 and body == b"2 GET /at-the-limits"
        finally:
            client.close()


def test_settings_from_the_endpoint() -> None:
    config = parse_config({"Models": [{"ID": "m", "URL": "/m"}], "Endpoint": {
        "HTTP2MaxConcurrentStreams": 32, "HTTP2StreamWindow": 70000, "HTTP2ConnectionWindow": 80000,
        "IdleTimeoutMs": 2500, "WriteTimeoutMs": 3000, "MaxHeaderBytes": 4096, "ReadTimeoutMs": 1200}})
    settings = h2_settings(config.endpoint)
    assert settings == H2Settings(enabled=True, max_concurrent_streams=32, stream_window=70000,
                                  connection_window=80000, idle_timeout=2.5, write_timeout=3.0,
                                  read_timeout=1.2, max_header_list_size=4096 + 2048)
    assert h2_settings(config.endpoint, enabled=False).enabled is False
    defaults = h2_settings(parse_config({"Models": [{"ID": "m", "URL": "/m"}]}).endpoint)
    assert (defaults.max_concurrent_streams, defaults.idle_timeout, defaults.write_timeout,
            defaults.read_timeout) == (250, 5.0, 5.0, 5.0)


def test_without_h2_the_server_serves_http1_and_says_why(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    import mly.http.protocol as protocol

    monkeypatch.setattr(protocol, "h2_available", lambda: False)  # stands in for an install without h2
    monkeypatch.setattr(protocol, "native_available", lambda: False)  # ... and built without libnghttp2
    endpoint = parse_config({"Models": [{"ID": "m", "URL": "/m"}]}).endpoint
    with caplog.at_level("WARNING", logger="mly.http"):
        assert h2_settings(endpoint).enabled is False
    assert "pip install 'mly[http2]'" in caplog.text
