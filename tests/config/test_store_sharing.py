"""Two models on one store would answer each other's rows: such configs stop at start."""

from __future__ import annotations

from typing import Any

import pytest

from mly.config import parse_config
from mly.errors import ConfigError

REDIS = {"ID": "r", "Kind": "redis", "Hostnames": "127.0.0.1", "Port": 6379}


def config(models: list[dict[str, Any]], datastores: list[dict[str, Any]],
           connections: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"Models": models, "Datastores": datastores, "Connections": connections or []}


def test_two_models_on_one_datastore_are_refused() -> None:
    raw = config(
        [{"ID": "ctr", "URL": "/m/a", "DataStore": "shared"}, {"ID": "ctr_b", "URL": "/m/b", "DataStore": "shared"}],
        [{"ID": "shared", "Cache": {"SizeMb": 8}}],
    )
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.key == "Models[1].DataStore"
    assert "already used by model 'ctr'" in str(info.value)
    assert "its own Datastores entry" in str(info.value)


def test_two_datastores_on_one_dataset_are_refused() -> None:
    raw = config(
        [{"ID": "ctr", "URL": "/m/a", "DataStore": "a"}, {"ID": "ctr_b", "URL": "/m/b", "DataStore": "b"}],
        [{"ID": "a", "Connection": "r", "Dataset": "rows"}, {"ID": "b", "Connection": "r2", "Dataset": "rows"}],
        # A second Connection entry for the same server is still the same place.
        [REDIS, {**REDIS, "ID": "r2"}],
    )
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.key == "Datastores[1].Dataset"
    assert "model 'ctr'" in str(info.value) and "give model 'ctr_b' its own Dataset" in str(info.value)


@pytest.mark.parametrize(("first", "second"), [
    # One server spelled two ways: a name and its address, upper case, a single Redis's unused seeds.
    ({"Hostnames": "127.0.0.1"}, {"Hostnames": "localhost"}),
    ({"Hostnames": "LocalHost"}, {"Hostnames": "localhost"}),
    ({"Hostnames": "127.0.0.1,10.0.0.9"}, {"Hostnames": "127.0.0.1"}),
])
def test_one_redis_spelled_two_ways_is_one_place(first: dict[str, str], second: dict[str, str]) -> None:
    raw = config(
        [{"ID": "ctr", "URL": "/m/a", "DataStore": "a"}, {"ID": "ctr_b", "URL": "/m/b", "DataStore": "b"}],
        [{"ID": "a", "Connection": "r", "Dataset": "rows"}, {"ID": "b", "Connection": "r2", "Dataset": "rows"}],
        [{**REDIS, **first}, {**REDIS, "ID": "r2", **second}],
    )
    with pytest.raises(ConfigError, match="give model 'ctr_b' its own Dataset"):
        parse_config(raw)


@pytest.mark.parametrize(("a", "b"), [
    ({"Namespace": "x:y", "Dataset": "rows"}, {"Namespace": "x", "Dataset": "y:rows"}),  # both x:y:rows:<key>
    ({"Namespace": "", "Dataset": "x"}, {"Namespace": "x", "Dataset": "y"}),  # x:<key "y:..."> meets x:y:<key>
])
def test_redis_prefixes_that_meet_are_one_place(a: dict[str, str], b: dict[str, str]) -> None:
    raw = config(
        [{"ID": "ctr", "URL": "/m/a", "DataStore": "a"}, {"ID": "ctr_b", "URL": "/m/b", "DataStore": "b"}],
        [{"ID": "a", "Connection": "r", **a}, {"ID": "b", "Connection": "r", **b}],
        [REDIS],
    )
    with pytest.raises(ConfigError, match="holds the same keys"):
        parse_config(raw)


def test_an_l2_that_is_another_models_l1_is_refused() -> None:
    raw = config(
        [{"ID": "ctr", "URL": "/m/a", "DataStore": "a"}, {"ID": "ctr_b", "URL": "/m/b", "DataStore": "b"}],
        [{"ID": "a", "Connection": "r", "Dataset": "rows"},
         {"ID": "b", "Connection": "r", "Dataset": "own", "L2": {"Connection": "r", "Dataset": "rows"}}],
        [REDIS],
    )
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.key == "Datastores[1].L2.Dataset"


@pytest.mark.parametrize("other", [
    {"Dataset": "rows_b"},                       # same connection, own dataset
    {"Dataset": "rows", "Namespace": "other"},   # same dataset name in another namespace
])
def test_one_connection_with_a_dataset_per_model_is_accepted(other: dict[str, str]) -> None:
    raw = config(
        [{"ID": "ctr", "URL": "/m/a", "DataStore": "a"}, {"ID": "ctr_b", "URL": "/m/b", "DataStore": "b"}],
        [{"ID": "a", "Connection": "r", "Dataset": "rows"}, {"ID": "b", "Connection": "r", **other}],
        [REDIS],
    )
    assert [m.datastore for m in parse_config(raw).models] == ["a", "b"]


def test_a_redis_database_is_its_own_place() -> None:
    raw = config(
        [{"ID": "ctr", "URL": "/m/a", "DataStore": "a"}, {"ID": "ctr_b", "URL": "/m/b", "DataStore": "b"}],
        [{"ID": "a", "Connection": "r", "Dataset": "rows"}, {"ID": "b", "Connection": "r1", "Dataset": "rows"}],
        [REDIS, {**REDIS, "ID": "r1", "Database": 1}],
    )
    assert len(parse_config(raw).models) == 2
