"""Int inputs on a cached model: a key never merges values the model tells apart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from live_server import LiveServer
from model_builders import INT_TABLES_HOUR, INT_TABLES_HOUR_OOV, build_int_tables_model


@pytest.fixture(scope="module")
def int_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    model = build_int_tables_model(str(tmp_path_factory.mktemp("int-tables") / "model"))
    config = {"Models": [{"ID": "it", "URL": model, "DataStore": "m"}],
              "Datastores": [{"ID": "m", "Cache": {"SizeMb": 1}}]}
    server = LiveServer(config, tmp_path_factory.mktemp("int-server")).start()
    yield server
    server.stop()


def score(server: LiveServer, row: dict[str, Any]) -> float:
    with server.client() as client:
        response = client.post("/v1/api/model/it/eval", json=row)
    assert response.status_code == 200, response.text
    return float(response.json()["data"]["score"])


def test_an_unknown_id_is_not_answered_as_id_zero(int_server: LiveServer) -> None:
    service = int_server.registry.get("it")
    assert score(int_server, {"hour": 0, "ik": 7}) == pytest.approx(INT_TABLES_HOUR[0])
    evaluated = service.rows_evaluated
    assert score(int_server, {"hour": 99, "ik": 7}) == pytest.approx(INT_TABLES_HOUR_OOV)
    assert service.rows_evaluated == evaluated + 1  # evaluated, not served from id 0's entry
    assert score(int_server, {"hour": 98, "ik": 7}) == pytest.approx(INT_TABLES_HOUR_OOV)
    assert service.rows_evaluated == evaluated + 1  # two unknown hours do share one entry


def test_a_value_that_wraps_through_a_narrowing_cast_has_its_own_key(int_server: LiveServer) -> None:
    service = int_server.registry.get("it")
    assert score(int_server, {"hour": 1, "ik": 5}) == pytest.approx(INT_TABLES_HOUR[1])
    evaluated = service.rows_evaluated
    # int64 4294967306 is 10 after cast(int32): in the table, so the model adds 10.
    assert score(int_server, {"hour": 1, "ik": 4294967306}) == pytest.approx(INT_TABLES_HOUR[1] + 10)
    assert service.rows_evaluated == evaluated + 1


def test_meta_config_tells_clients_to_key_the_raw_value(int_server: LiveServer) -> None:
    with int_server.client() as client:
        inputs = {f["Name"]: f for f in client.get("/v1/api/model/it/meta/config").json()["Inputs"]}
        layers = client.get("/v1/api/model/it/meta/dictionary").json()["Layers"]
    assert inputs["ik"].get("Wildcard") is True and not inputs["hour"].get("Wildcard")
    assert [layer["Name"] for layer in layers] == ["hour"]
