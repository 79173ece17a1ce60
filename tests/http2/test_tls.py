"""TLS from ``TLS.CertFile``/``KeyFile`` with ALPN ``h2`` and ``http/1.1``; a certificate made at test time."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from click.testing import CliRunner
from http2.h2_setup import ROW
from live_server import LiveServer
from redis_server import free_port

from mly.cli import main
from mly.config import parse_config
from mly.errors import ConfigError
from mly.server import check_tls

EVAL = "/v1/api/model/sli/eval"


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@pytest.mark.parametrize(("http2", "version"), [(True, "HTTP/2"), (False, "HTTP/1.1")])
def test_eval_over_tls_with_alpn(tls_server: LiveServer, certificate: tuple[Path, Path], http2: bool,
                                 version: str) -> None:
    assert tls_server.url.startswith("https://")
    with httpx.Client(base_url=tls_server.url, verify=trusting(certificate[0]), http2=http2, timeout=30) as client:
        response = client.post(EVAL, json=ROW)
        assert response.http_version == version
        assert response.status_code == 200 and response.json()["data"]["score"] == 21.5
        assert client.get("/v1/api/health").json() == {"sli": 1}


@pytest.mark.parametrize(("offered", "chosen"), [(["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")])
def test_alpn_negotiation(tls_server: LiveServer, certificate: tuple[Path, Path], offered: list[str],
                          chosen: str) -> None:
    context = trusting(certificate[0])
    context.set_alpn_protocols(offered)
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == chosen
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_tls12_client_gets_an_http2_cipher(tls_server: LiveServer, certificate: tuple[Path, Path]) -> None:
    context = trusting(certificate[0])
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        name, _, _ = tls.cipher()  # type: ignore[misc]
        assert tls.selected_alpn_protocol() == "h2"
        assert "GCM" in name or "CHACHA20" in name, name  # RFC 9113 §9.2.2: AEAD with forward secrecy


def test_curl_http2_over_tls(tls_server: LiveServer, certificate: tuple[Path, Path]) -> None:
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl is not installed")
    done = subprocess.run([path, "-sS", "--http2", "--cacert", str(certificate[0]), "-w", "\n%{http_version}",
                           "-d", orjson.dumps(ROW).decode(), tls_server.url + EVAL],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition("\n")
    assert version == "2" and orjson.loads(body)["data"]["score"] == 21.5


def test_plain_http_on_the_tls_port_gets_no_answer(tls_server: LiveServer) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_server.url.replace("https://", "http://") + "/v1/api/health", timeout=5)


def tls_config(cert: str, key: str) -> dict[str, object]:
    return {"Models": [{"ID": "m", "URL": "/m"}], "TLS": {"CertFile": cert, "KeyFile": key}}


def test_bad_tls_files_name_the_field(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = (str(p) for p in certificate)
    with pytest.raises(ConfigError, match=r"TLS\.CertFile.*no such file"):
        check_tls(parse_config(tls_config(str(tmp_path / "none.pem"), key)))
    with pytest.raises(ConfigError, match=r"TLS\.KeyFile.*no such file"):
        check_tls(parse_config(tls_config(cert, str(tmp_path / "none.pem"))))
    with pytest.raises(ConfigError, match=r"TLS\.CertFile.*cannot load"):
        check_tls(parse_config(tls_config(key, cert)))  # swapped
    with pytest.raises(ConfigError, match=r"TLS\.KeyFile.*required"):
        parse_config({"Models": [{"ID": "m", "URL": "/m"}], "TLS": {"CertFile": cert}})
    check_tls(parse_config(tls_config(cert, key)))


def test_serve_with_a_missing_certificate_exits_3_before_loading(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    # The model path does not exist either: the TLS error must come first, before any model load.
    config.write_text(yaml.safe_dump(tls_config(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))))
    result = CliRunner().invoke(main, ["serve", str(config), "--port", str(free_port())])
    assert result.exit_code == 3, result.output
    assert "TLS.CertFile" in result.output and "no such file" in result.output
