"""Aerospike with a user and password: passed to the client, the secret from the environment and
never shown by an endpoint; against the Community Edition server here (which has no security), a
clear refusal at start and lookups that miss.

What cannot be tried here, with no Enterprise server: a correct login, and a wrong password.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aerospike_server import NAMESPACE, AerospikeServer, aerospike_l1
from live_server import LiveServer
from serve_process import cli_env, mly_fast

from mly.cache.aerospike import AerospikeStore, aerospike_client_config
from mly.cache.probe import probe_connection
from mly.cache.tiered import TieredCache
from mly.config import load_config, parse_config
from mly.errors import ConfigError

__all__ = ["aerospike_l1"]  # the session's server, used here

SECRET = "as-s3cret-4b81d0"


@pytest.fixture
def aero(aerospike_l1: AerospikeServer) -> Iterator[AerospikeServer]:
    aerospike_l1.ensure_up()
    yield aerospike_l1


def config(server: AerospikeServer, model: str, password: str = "${MLY_TEST_AEROSPIKE_PASSWORD}") -> dict[str, Any]:
    return {
        "Endpoint": {"Port": 0},
        "Models": [{"ID": "sli", "URL": model, "DataStore": "d", "Inputs": [{"Name": "fl", "Precision": 2}]}],
        "Connections": [{"ID": "secure", "Hostnames": server.host, "Port": server.port, "Username": "mly",
                         "Password": password, "Timeout": {"Total": 300}}],
        "Datastores": [{"ID": "d", "Connection": "secure", "Namespace": NAMESPACE, "Dataset": "secured"}],
    }


def test_the_password_comes_from_the_environment_and_reaches_the_client(
    aero: AerospikeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLY_TEST_AEROSPIKE_PASSWORD", SECRET)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(aero, "model")))
    connection = load_config(path).connections[0]
    assert (connection.kind, connection.username, connection.password) == ("aerospike", "mly", SECRET)
    client_config = aerospike_client_config(connection)
    assert (client_config["user"], client_config["password"]) == ("mly", SECRET)
    assert SECRET not in repr(connection)
    plain = aerospike_client_config(parse_config(
        {**config(aero, "model"), "Connections": [{"ID": "secure", "Hostnames": "h"}]}).connections[0])
    assert "user" not in plain and "password" not in plain  # no login without a user
    # A Python client reading meta/config gets the user only: no login until it is given the password.
    shown = load_config(path).connections[0]
    assert "user" not in aerospike_client_config(dataclasses.replace(shown, password=""))


@pytest.mark.parametrize(("given", "missing"), [({"Username": "mly"}, "Password"), ({"Password": "x"}, "Username")])
def test_an_aerospike_user_and_password_go_together(given: dict[str, str], missing: str) -> None:
    """The client ignores a user without a password: a config that relies on it is refused."""
    raw = {"Models": [{"ID": "m", "URL": "/m", "DataStore": "d"}],
           "Datastores": [{"ID": "d", "Connection": "c", "Namespace": "test", "Dataset": "x"}],
           "Connections": [{"ID": "c", "Hostnames": "h", **given}]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.key == f"Connections[0].{missing}" and "Aerospike" in str(info.value)


def test_a_server_without_security_refuses_the_login_clearly_and_lookups_miss(aero: AerospikeServer) -> None:
    connection = parse_config(config(aero, "model", password=SECRET)).connections[0]
    problem = probe_connection(connection)
    assert problem is not None and "SecurityNotSupported" in problem and "Community Edition" in problem, problem
    assert SECRET not in problem

    async def lookup() -> tuple[list[bytes | None], TieredCache]:
        store = AerospikeStore.from_connection(connection, namespace=NAMESPACE, dataset="secured", ttl_ms=60_000)
        cache = TieredCache(None, store, None, ttl_ms=60_000, timeout_s=0.3)
        try:
            return await cache.get_many(["k"], 0), cache
        finally:
            await cache.aclose()

    found, cache = asyncio.run(lookup())
    assert found == [None] and cache.counters.errors == 1  # a store that refuses is down: a miss
    assert cache.l1 is not None and cache.l1.breaker.opened == 1


def test_mly_fast_check_warns_naming_the_connection(
    aero: AerospikeServer, model_dirs: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(aero, model_dirs["keras"], password=SECRET)))
    done = subprocess.run([*mly_fast(), "check", str(path)], capture_output=True, text=True,
                          env=cli_env(), timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output  # a warning: the server would start and treat the store as down
    warning = next((line for line in output.splitlines() if "Connections[secure]" in line), None)
    assert warning is not None and "Community Edition" in warning, output
    assert SECRET not in output


def test_no_endpoint_shows_the_secret(aero: AerospikeServer, model_dirs: dict[str, str], tmp_path: Path) -> None:
    server = LiveServer(config(aero, model_dirs["keras"], password=SECRET), tmp_path)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            shown = [http.get(path).text for path in ("/v1/api/config", "/v1/api/model/sli/meta/config")]
            answer = http.post("/v1/api/model/sli/eval", json={"sa": "a", "sl": "b", "i1": 20, "fl": 1.5})
        assert all(SECRET not in text for text in shown)
        assert all('"Username":"mly"' in text and "Password" not in text for text in shown)
        assert answer.status_code == 200  # the store refuses the login: a miss, computed
        # A Python client logs in only when given the password itself, and is refused as the server was.
        from mly.client import Client, ClientOptions

        row = {"sa": "a", "sl": "b", "i1": 20, "fl": 1.5}
        for passwords, refused in ((None, False), ({"secure": SECRET}, True)):
            with Client("sli", server.url.removeprefix("http://"),
                        options=ClientOptions(store_passwords=passwords)) as client:
                assert client.predict(row).data == answer.json()["data"]
                assert client.cache is not None and client.cache.l1 is not None
                assert (client.cache.l1.breaker.opened == 1) is refused
    finally:
        server.stop()
