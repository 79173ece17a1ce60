"""Servers for the HTTP/2, TLS and streaming tests: real models, served the way ``mly-fast serve`` does."""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from http2.h2_setup import ENGINES, engine_env, h2_config
from live_server import LiveServer

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
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mly test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="package")
def tls_server(engine: str, model_dirs: dict[str, str], certificate: tuple[Path, Path],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cert, key = certificate
    config = h2_config(model_dirs, TLS={"CertFile": str(cert), "KeyFile": str(key)})
    with engine_env(engine):
        live = LiveServer(config, tmp_path_factory.mktemp("tls_server"), protocol="mly").start()
    yield live
    live.stop()
