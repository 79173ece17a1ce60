"""Which engine serves HTTP/2: chosen once per server from ``MLY_HTTP2_ENGINE`` (default: the
native one when it was built), and every HTTP/2 connection of that server is served by it."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from http2.h2_setup import engine_env, h2_connections
from http2.h2client import RawH2
from live_server import LiveServer

from mly.errors import ConfigError
from mly.http.h2engine import ENGINE_ENV, connection_class, h2_engine, native_available


def test_the_server_serves_http2_with_its_engine(h2server: LiveServer, engine: str) -> None:
    client = RawH2(h2server.port)
    try:
        assert client.response(client.request("GET", "/v1/api/health"))[0] == 200
        served = h2_connections(h2server)
        assert served and {type(c) for c in served} == {connection_class(engine)}
    finally:
        client.close()


def test_tls_with_alpn_h2_goes_through_the_same_engine(tls_server: LiveServer, certificate: tuple[Path, Path],
                                                       engine: str) -> None:
    with httpx.Client(base_url=tls_server.url, verify=ssl.create_default_context(cafile=str(certificate[0])),
                      http1=False, http2=True, timeout=30) as client:
        response = client.get("/v1/api/health")
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        served = h2_connections(tls_server)
        assert served and {type(c) for c in served} == {connection_class(engine)}
        assert {c.scheme for c in served} == {"https"}


def test_the_native_engine_is_the_default_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    assert h2_engine() == ("nghttp2" if native_available() else "h2")
    with engine_env("h2"):
        assert h2_engine() == "h2"


def test_asking_for_nghttp2_without_it_falls_back_to_h2_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import mly.http.h2engine as h2engine

    monkeypatch.setattr(h2engine, "native_available", lambda: False)  # stands in for a build without libnghttp2
    with engine_env("nghttp2"), caplog.at_level("WARNING", logger="mly.http"):
        assert h2_engine() == "h2"
    assert "libnghttp2-dev" in caplog.text


def test_an_unknown_engine_is_an_error_naming_the_variable() -> None:
    with engine_env("fast"), pytest.raises(ConfigError, match="must be one of nghttp2, h2") as err:
        h2_engine()
    assert err.value.key == ENGINE_ENV


def test_asking_for_h2_without_the_package_keeps_nghttp2_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    import mly.http.h2engine as h2engine

    if not native_available():
        pytest.skip("the nghttp2 engine is not built")
    monkeypatch.setattr(h2engine, "h2_available", lambda: False)  # stands in for an install without h2
    with engine_env("h2"), caplog.at_level("WARNING", logger="mly.http"):
        assert h2_engine() == "nghttp2"
    assert "pip install 'mly[http2]'" in caplog.text
