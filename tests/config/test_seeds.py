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
])
def test_a_malformed_entry_is_a_config_error_naming_it(hostnames: str, message: str) -> None:
    raw = {"Models": [{"ID": "m", "URL": "/m", "DataStore": "d"}],
           "Datastores": [{"ID": "d", "Connection": "c", "Namespace": "test", "Dataset": "x"}],
           "Connections": [{"ID": "c", "Hostnames": f"ok, {hostnames}", "Port": 3000}]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.key == "Connections[0].Hostnames"
    assert message in str(info.value) and repr(hostnames.strip()) in str(info.value)
