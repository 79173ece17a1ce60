"""Go fields that are accepted but not implemented are named, never silently ignored."""

from __future__ import annotations

from mly.config import parse_config
from mly.config.unsupported import unsupported_settings


def test_unsupported_settings_are_named() -> None:
    config = parse_config({
        "Models": [{"ID": "m", "URL": "/m", "Test": {"Test": True}, "Stream": {"URL": "/tmp/log"},
                    "DictURL": "/d.json"}],
        "TLS": {"CertFile": "c.pem", "KeyFile": "k.pem"},  # implemented: no longer named
        "EnableCPUProf": True, "EnableMemProf": True,  # implemented: no longer named (Stream neither)
    })
    found = unsupported_settings(config)
    assert [f.split(":")[0] for f in found] == [
        "Models[0].DictURL",
    ]
    assert unsupported_settings(parse_config({"Models": [{"ID": "m", "URL": "/m"}]})) == []
