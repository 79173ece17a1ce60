"""``Hostnames`` seeds with their own ports, as a cluster whose nodes share a host needs."""

from __future__ import annotations

import pytest

from mly.config import parse_config
from mly.config.seeds import parse_seeds
from mly.errors import ConfigError


def test_entries_keep_their_own_port_and_others_use_port() -> None:
    assert parse_seeds("127.0.0.1:3100, 127.0.0.1:3110,aero3", 3000) == [
        ("127.0.0.1", 3100), ("127.0.0.1", 3110), ("aero3", 3000)]


def test_ipv6_entries() -> None:
    assert parse_seeds("[::1]:3100,[fe80::1],::1", 3000) == [("::1", 3100), ("fe80::1", 3000), ("::1", 3000)]


@pytest.mark.parametrize(("hostnames", "message"), [
    ("h:0", "port must be 1..65535, got '0'"),
    ("h:70000", "port must be 1..65535"),
    ("h:x", "port must be 1..65535, got 'x'"),
    ("h:", "port must be 1..65535, got ''"),
    (":3000", "the host is missing"),
    ("[::1", "needs its closing ']'"),
    ("[::1]3000", "expected ']:port'"),
    ("h:\uff16\uff13\uff18\uff10", "port must be 1..65535"),  # full-width digits
    ("redis://h:6379", "no scheme, path or spaces"),
    ("h :6379", "no scheme, path or spaces"),
])
def test_a_malformed_entry_is_a_config_error_naming_it(hostnames: str, message: str) -> None:
    raw = {"Models": [{"ID": "m", "URL": "/m", "DataStore": "d"}],
           "Datastores": [{"ID": "d", "Connection": "c", "Namespace": "test", "Dataset": "x"}],
           "Connections": [{"ID": "c", "Hostnames": f"ok, {hostnames}", "Port": 3000}]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.key == "Connections[0].Hostnames"
    assert message in str(info.value) and repr(hostnames.strip()) in str(info.value)


def test_a_password_is_never_in_a_repr() -> None:
    from mly.client import ClientOptions
    from mly.config.schema import Connection

    assert "Zq9-secret" not in repr(Connection(id="c", kind="redis", hostnames="h", password="Zq9-secret"))
    assert "Zq9-secret" not in repr(Connection(id="c", hostnames="h", username="u", password="Zq9-secret"))
    assert "Zq9-secret" not in repr(ClientOptions(store_passwords={"c": "Zq9-secret"}))


def test_tls_ca_file_is_relative_to_the_config_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mly.config import load_config

    (tmp_path / "config.yaml").write_text(
        "Models: [{ID: m, URL: model, DataStore: d}]\n"
        "Datastores: [{ID: d, Connection: c, Dataset: x}]\n"
        "Connections: [{ID: c, Kind: redis, Hostnames: h, TLS: true, TLSCAFile: ca.pem}]\n")
    assert load_config(tmp_path / "config.yaml").connections[0].tls_ca_file == str(tmp_path / "ca.pem")
