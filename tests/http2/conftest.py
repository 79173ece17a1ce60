"""Servers for the HTTP/2, TLS and streaming tests: real models, served the way ``mly-fast serve`` does."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from http2.h2_setup import ENGINES, engine_env, h2_config
from live_server import LiveServer
from tls_cert import self_signed_certificate

if importlib.util.find_spec("h2") is None:  # the http2 extra
    if os.environ.get("CI"):
        raise RuntimeError("the h2 package is not installed (pip install -e '.[http2]'): HTTP/2 is untested")
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="package", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Every HTTP/2 test runs against each engine (``h2``, and ``nghttp2`` when built)."""
    return str(request.param)


@pytest.fixture(scope="package")
def h2server(engine: str, model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with engine_env(engine):
        live = LiveServer(h2_config(model_dirs), tmp_path_factory.mktemp("h2server"), protocol="mly").start()
    yield live
    live.stop()


@pytest.fixture(scope="package")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made now: (cert.pem, key.pem)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="package")
def tls_server(engine: str, model_dirs: dict[str, str], certificate: tuple[Path, Path],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cert, key = certificate
    config = h2_config(model_dirs, TLS={"CertFile": str(cert), "KeyFile": str(key)})
    with engine_env(engine):
        live = LiveServer(config, tmp_path_factory.mktemp("tls_server"), protocol="mly").start()
    yield live
    live.stop()
