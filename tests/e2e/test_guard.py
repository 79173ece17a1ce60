"""AllowedSubnet: Go's string-prefix check on admin endpoints; eval and meta stay open."""

from __future__ import annotations

from pathlib import Path

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
