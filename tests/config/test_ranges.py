"""Every numeric setting has its real range, checked when the config loads, the key named."""

from __future__ import annotations

import math
from dataclasses import is_dataclass
from typing import Any

import pytest

import mly.config.schema as schema
from mly.config import parse_config
from mly.config.ranges import RANGES, numeric_fields
from mly.errors import ConfigError

STORE = {"Connections": [{"ID": "c", "Hostnames": "127.0.0.1", "Kind": "redis"}],
         "Datastores": [{"ID": "d", "Connection": "c", "Dataset": "x"}]}


def schema_classes() -> list[type]:
    return [c for c in vars(schema).values() if isinstance(c, type) and is_dataclass(c) and c.__module__ == schema.__name__]


def test_every_numeric_setting_has_a_range() -> None:
    """A new numeric field cannot be added without deciding what range its consumer takes."""
    missing = [f"{cls.__name__}.{key}" for cls in schema_classes() for _, key, _ in numeric_fields(cls)
               if (cls, key) not in RANGES]
    assert missing == []
    assert sum(len(numeric_fields(cls)) for cls in schema_classes()) == len(RANGES)  # no stale rules


def with_model(**model: Any) -> dict[str, Any]:
    return {"Models": [{"ID": "m", "URL": "/m", **model}]}


def with_timeout(**timeout: Any) -> dict[str, Any]:
    return {**with_model(), "Connections": [{**STORE["Connections"][0], "Timeout": timeout}],
            "Datastores": STORE["Datastores"]}


@pytest.mark.parametrize(("raw", "message"), [
    # Passed before, then broke every HTTP/2 connection (a 32-bit SETTINGS value).
    ({**with_model(), "Endpoint": {"HTTP2MaxConcurrentStreams": 5_000_000_000}},
     "Endpoint.HTTP2MaxConcurrentStreams: must be 1..4294967295, got 5000000000"),
    ({**with_model(), "Endpoint": {"MaxHeaderBytes": 4_294_967_295}},
     "Endpoint.MaxHeaderBytes: must be 0..4294965247, got 4294967295"),
    # Passed before, then crashed the cache's construction (check, serve) with a ValueError.
    (with_timeout(Total=0), r"Connections\[0\].Timeout.Total: must be 1..2147483647 ms, got 0"),
    (with_timeout(Connection=-5), r"Connections\[0\].Timeout.Connection: must be 1..2147483647 ms, got -5"),
    (with_timeout(Unit="min", Total=40_000),
     r"Connections\[0\].Timeout.Total: must be 1..2147483647 ms, got 40000 min = 2400000000 ms"),
    ({**with_model(), "Connections": [{**STORE["Connections"][0], "Database": -1}], "Datastores": STORE["Datastores"]},
     r"Connections\[0\].Database: must be 0..2147483647, got -1"),
    ({**with_model(DataStore="d"), "Datastores": [{"ID": "d", "Cache": {"SizeMb": 1}, "TimeToLiveMs": 2**53}]},
     r"Datastores\[0\].TimeToLiveMs: must be 0..2147483647000"),
    ({**with_model(DataStore="d"), "Datastores": [{"ID": "d", "Cache": {"SizeMb": 2**44}}]},
     r"Datastores\[0\].Cache.SizeMb: must be 0..8796093022207"),
    (with_model(ReloadIntervalSec=math.nan), r"Models\[0\].ReloadIntervalSec: must be a finite number, got nan"),
    (with_model(ReloadIntervalSec=math.inf), r"Models\[0\].ReloadIntervalSec: must be a finite number, got inf"),
    (with_model(Inputs=[{"Name": "a", "Index": -1}]), r"Models\[0\].Inputs\[0\].Index: must be 0..2147483647"),
    (with_model(BatchWaitMicros=2**62), r"Models\[0\].BatchWaitMicros: must be"),
    ({**with_model(), "Endpoint": {"TFIntraOpThreads": 2**31}}, "Endpoint.TFIntraOpThreads: must be -1..2147483647"),
    ({**with_model(), "Endpoint": {"PoolMaxSize": 2**63}}, "Endpoint.PoolMaxSize: must be -9223372036854775808.."),
    ({**with_model(), "Metrics": {"Prometheus": {"ModelIdletimeBuckets": [1000, math.inf]}}},
     "Metrics.Prometheus.ModelIdletimeBuckets: must be a list of positive finite numbers"),
])
def test_a_value_out_of_range_names_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_the_bounds_themselves_are_accepted() -> None:
    config = parse_config({**with_timeout(Unit="sec", Connection=2_147_483, Socket=0, Total=1),
                           "Endpoint": {"HTTP2MaxConcurrentStreams": 2**32 - 1, "MaxHeaderBytes": 2**32 - 1 - 2048}})
    timeout = config.connections[0].timeout
    assert (timeout.ms(timeout.connection), timeout.ms(timeout.total)) == (2_147_483_000, 1000)
    assert config.endpoint.http2_max_concurrent_streams == 2**32 - 1


def test_defaults_are_within_their_ranges() -> None:
    """Each default of the schema is accepted (a too-narrow range would refuse configs that omit the key)."""
    for cls in schema_classes():
        defaults = cls()
        for name, key, _ in numeric_fields(cls):
            rule = RANGES[(cls, key)]
            value = getattr(defaults, name)
            if rule.in_ms:
                value = defaults.ms(value)
            assert rule.lo <= value <= rule.hi, f"{cls.__name__}.{key} = {value}"
