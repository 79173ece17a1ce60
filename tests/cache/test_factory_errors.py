"""A datastore whose store library is not installed refuses to start, naming the extra."""

from __future__ import annotations

import sys

import pytest

from mly.cache.factory import build_datastore
from mly.config import parse_config
from mly.errors import ConfigError


@pytest.mark.parametrize(("kind", "module", "extra"), [("aerospike", "aerospike", "mly[aerospike]"),
                                                        ("redis", "redis", "mly[redis]")])
def test_missing_client_library_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, kind: str, module: str, extra: str
) -> None:
    # Not installed cannot be caused for real inside this process: None in sys.modules
    # makes the import fail exactly as a missing package does.
    monkeypatch.setitem(sys.modules, module, None)
    for name in [m for m in sys.modules if m.startswith("mly.cache.") and m.split(".")[-1] == kind]:
        monkeypatch.delitem(sys.modules, name)
    config = parse_config({
        "Models": [{"ID": "m", "URL": "/m", "DataStore": "d"}],
        "Connections": [{"ID": "c", "Hostnames": "h", "Kind": kind}],
        "Datastores": [{"ID": "d", "Connection": "c", "Namespace": "n", "Dataset": "s"}],
    })
    with pytest.raises(ConfigError, match=r"Connections\[c\]\.Kind") as info:
        build_datastore(config.datastores[0], config)
    assert extra in str(info.value)
