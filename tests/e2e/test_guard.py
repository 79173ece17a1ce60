"""AllowedSubnet: Go's string-prefix check on admin endpoints; eval and meta stay open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer


@pytest.mark.parametrize(("prefixes", "admin_status"), [(["10.", "192.168."], 403), (["127.0.0.1:"], 200)])
def test_allowed_subnet(model_dirs: dict[str, str], tmp_path: Path, prefixes: list[str], admin_status: int) -> None:
    config = {"AllowedSubnet": prefixes, "Models": [{"ID": "ops", "URL": model_dirs["ops"]}]}
    server = LiveServer(config, tmp_path).start()
    try:
        with server.client() as client:
            for path in ("/v1/api/health", "/v1/api/config", "/v1/api/config/"):
                response = client.get(path)
                assert response.status_code == admin_status, path
                if admin_status == 403:
                    assert response.content == b""
            assert client.get("/v1/api/model/ops/meta/config").status_code == 200
            assert client.post("/v1/api/model/ops/eval", json={"sa": "a", "ik": 1}).status_code == 200
    finally:
        server.stop()


def _admin_statuses(server: LiveServer, headers: dict[str, str]) -> list[tuple[str, int]]:
    """Status of ``/v1/api/health`` and ``/v1/api/config`` over HTTP/1.1 and cleartext HTTP/2."""
    statuses = []
    for http2 in (False, True):
        with httpx.Client(base_url=server.url, http1=not http2, http2=http2, timeout=30) as client:
            for path in ("/v1/api/health", "/v1/api/config"):
                response = client.get(path, headers=headers)
                assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                statuses.append((f"{response.http_version} {path}", response.status_code))
    return statuses


@pytest.mark.parametrize(("trusted", "expected"), [((), 403), (["127.0.0.1"], 200)])
def test_forwarded_headers_name_the_client_only_from_trusted_peers(
    model_dirs: dict[str, str], tmp_path: Path, trusted: tuple[str, ...], expected: int
) -> None:
    """The guard checks the socket's peer (as Go): an ``X-Forwarded-For`` naming an allowed address
    passes only when ``Endpoint.ForwardedAllowIPs`` trusts the peer that sent it."""
    config: dict[str, Any] = {"AllowedSubnet": ["10."], "Models": [{"ID": "ops", "URL": model_dirs["ops"]}]}
    if trusted:  # the default is no key at all
        config["Endpoint"] = {"ForwardedAllowIPs": list(trusted)}
    server = LiveServer(config, tmp_path).start()
    try:
        forwarded = _admin_statuses(server, {"X-Forwarded-For": "10.9.9.9"})
        assert forwarded == [(where, expected) for where, _ in forwarded]
        plain = _admin_statuses(server, {})
        assert plain == [(where, 403) for where, _ in plain]
    finally:
        server.stop()
