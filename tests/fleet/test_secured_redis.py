"""A Redis with a password and TLS: reachable with the secret from the environment,
a clear warning with a wrong one, and the secret never shown by an endpoint."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from live_server import LiveServer
from redis_server import REDIS_BINARY, RedisServer
from serve_process import cli_env, mly_fast
from tls_cert import self_signed_certificate

from mly.cache.base import StoredRow
from mly.cache.redis import RedisStore
from mly.config import load_config

SECRET = "s3cret-7f1c2a9e"


class SecuredRedis(RedisServer):
    """redis-server with ``requirepass`` answering only TLS (its plain port is off)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("secured", workdir)
        self.cert, self.key = self_signed_certificate(workdir)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_BINARY, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
             "--tls-ca-cert-file", str(self.cert), "--tls-auth-clients", "no",
             "--requirepass", SECRET, "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 5.0) -> None:
        import time

        import redis

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with redis.Redis(port=self.port, password=SECRET, ssl=True, ssl_ca_certs=str(self.cert),
                                 socket_timeout=0.5) as r:
                    if r.ping():
                        return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.fixture(scope="module")
def secured(redis_servers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredRedis]:
    server = SecuredRedis(tmp_path_factory.mktemp("secured-redis"))
    server.start()
    yield server
    server.kill()


def config_text(server: SecuredRedis, model: str, password: str = "${MLY_TEST_REDIS_PASSWORD}") -> str:
    return yaml.safe_dump({
        "Endpoint": {"Port": 0},
        "Models": [{"ID": "sli", "URL": model, "DataStore": "d", "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [{"ID": "secure", "Kind": "redis", "Hostnames": f"127.0.0.1:{server.port}",
                         "Password": password, "TLS": True, "TLSCAFile": str(server.cert),
                         "Timeout": {"Total": 500}}],
        "Datastores": [{"ID": "d", "Cache": {"SizeMb": 1}, "Connection": "secure", "Dataset": "sli"}],
    })


def test_the_password_comes_from_the_environment_and_tls_is_used(
    secured: SecuredRedis, model_dirs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLY_TEST_REDIS_PASSWORD", SECRET)
    path = tmp_path / "config.yaml"
    path.write_text(config_text(secured, model_dirs["keras"]))
    connection = load_config(path).connections[0]
    assert connection.password == SECRET and connection.tls

    async def roundtrip() -> list[StoredRow | None]:
        store = RedisStore.from_connection(connection, namespace="", dataset="sli", ttl_ms=60_000)
        try:
            await store.put_many([("k", StoredRow({"v": 1}, 7))])
            return await store.get_many(["k"])
        finally:
            await store.aclose()

    assert asyncio.run(roundtrip()) == [StoredRow({"v": 1}, 7)]


def test_no_endpoint_shows_the_secret_and_a_client_uses_its_own(
    secured: SecuredRedis, model_dirs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mly.client import Client, ClientOptions

    monkeypatch.setenv("MLY_TEST_REDIS_PASSWORD", SECRET)
    server_config = yaml.safe_load(config_text(secured, model_dirs["keras"], password=SECRET))
    server = LiveServer(server_config, tmp_path)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            shown = [http.get(path).text for path in ("/v1/api/config", "/v1/api/model/sli/meta/config")]
        assert all(SECRET not in text for text in shown)
        assert all('"TLS":true' in text and "Password" not in text for text in shown)
        row = {"sa": "a", "sl": "b", "i1": 20, "fl": 1.5}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            answer = http.post("/v1/api/model/sli/eval", json=row).json()["data"]
        cache = server.registry.caches["d"]
        asyncio.run_coroutine_threadsafe(cache.flush(), server.loop).result(timeout=10)
        assert cache.counters.writes == 1
        options = ClientOptions(store_passwords={"secure": SECRET})
        with Client("sli", server.url.removeprefix("http://"), options=options) as client:
            got = client.predict(row)
            assert got.status == "cached" and got.data == answer  # from the secured L1, not the server
            assert client.cache is not None and client.cache.counters.hits_l1 == 1
    finally:
        server.stop()


def test_a_wrong_password_is_a_start_up_warning_naming_the_connection(
    secured: SecuredRedis, model_dirs: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(secured, model_dirs["keras"], password="not-the-password"))
    done = subprocess.run([*mly_fast(), "check", str(path)], capture_output=True, text=True, env=cli_env(),
                          timeout=240)
    assert done.returncode == 0, done.stderr
    warning = next(line for line in (done.stdout + done.stderr).splitlines() if "Connections[secure]" in line)
    assert "unreachable" in warning and ("invalid" in warning.lower() or "auth" in warning.lower()), warning
    assert "not-the-password" not in done.stdout + done.stderr
