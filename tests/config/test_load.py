"""Config loading: Go names and defaults, case-insensitive keys, env expansion, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mly.config import load_config, parse_config, to_json
from mly.errors import ConfigError

GO_STYLE = """
Endpoint:
  Port: 8086
Models:
  - id: sli
    url: ${MODEL_DIR}/sli
    useDict: true
    datastore: sliCache
    transformer: ""
    keyfields:
      - sa
      - sl
      - aux
    inputs:
      - name: sa
      - name: sl
      - name: aux
        wildcard: true
    auxiliary:
      - aux
Datastores:
  - id: sliCache
    cache:
      sizeMb: 64
    timeToLiveMs: 30000
"""


def test_go_style_lower_case_keys_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_DIR", "/models")
    path = tmp_path / "config.yaml"
    path.write_text(GO_STYLE)
    config = load_config(path)
    model = config.models[0]
    assert (model.id, model.url, model.datastore) == ("sli", "/models/sli", "sliCache")
    assert model.key_fields == ("sa", "sl", "aux")
    assert [f.name for f in model.inputs] == ["sa", "sl", "aux"]
    assert model.inputs[2].wildcard and not model.inputs[0].wildcard
    assert config.endpoint.port == 8086
    ds = config.datastore("sliCache")
    assert ds is not None and ds.cache is not None
    assert (ds.cache.size_mb, ds.time_to_live_ms, ds.retry_time_ms) == (64, 30000, 5000)


def test_go_defaults() -> None:
    config = parse_config({"Models": [{"ID": "m", "URL": "/m"}]})
    ep = config.endpoint
    assert (ep.port, ep.buffer_size, ep.write_timeout_ms, ep.max_evaluator_concurrency) == (8080, 131072, 5000, 5000)
    assert ep.deadline_ms == 4999
    model = config.models[0]
    assert model.tags == ("serve",) and model.use_dict is True and model.reload_interval_sec == 60
    config = parse_config({"Models": [{"ID": "m", "URL": "/m"}], "Connections": [{"ID": "c", "Hostnames": "a,b"}],
                           "Datastores": [{"ID": "d", "Connection": "c", "Namespace": "n", "Dataset": "s"}]})
    conn = config.connections[0]
    assert conn.hosts == ["a", "b"] and conn.effective_port == 3000
    assert (conn.timeout.total, conn.timeout.socket, conn.timeout.connection) == (450, 400, 800)
    assert config.datastores[0].time_to_live_ms == 900_000


def test_relative_model_url_resolves_against_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.yaml"
    path.parent.mkdir()
    path.write_text("Models:\n  - ID: m\n    URL: ../model\n")
    assert load_config(path).models[0].url == str((tmp_path / "model").resolve())
    path.write_text("Models:\n  - ID: m\n    URL: file:///abs/model\n")
    assert load_config(path).models[0].url == "file:///abs/model"


def test_to_json_uses_go_names_and_omitempty() -> None:
    config = parse_config({"models": [{"id": "m", "url": "/m", "inputs": [{"name": "x", "precision": 2}]}]})
    data = to_json(config)
    model = data["Models"][0]
    assert model["ID"] == "m" and model["UseDict"] is True
    assert model["Inputs"] == [{"Name": "x", "Index": 0, "DataType": "", "Precision": 2}]
    assert "Batch" not in model and "KeyFields" not in model


BAD = [
    ({"Models": []}, "Models: at least one model is required"),
    ({"Models": [{"ID": "m"}]}, "Models[0].URL: is required (model 'm')"),
    ({"Models": [{"URL": "/m"}]}, "Models[0].ID: is required"),
    ({"Models": [{"ID": "a", "URL": "/a"}, {"ID": "a", "URL": "/b"}]}, "Models[1].ID: duplicate model ID 'a'"),
    ({"Models": [{"ID": "m", "URL": "/m", "Inputs": [{"Name": "a"}, {"Name": "b", "Precision": -1}]}]},
     "Models[0].Inputs[1].Precision: must be >= 0"),
    ({"Models": [{"ID": "m", "URL": "/m", "Inputs": [{"Name": "a", "Precison": 2}]}]},
     "Models[0].Inputs[0].Precison: unknown key"),
    ({"Models": [{"ID": "m", "URL": "/m", "UseDict": "yes"}]}, "Models[0].UseDict: must be true or false"),
    ({"Models": [{"ID": "m", "URL": "/m", "Inputs": {"a": 1}}]}, "Models[0].Inputs: must be a list"),
    ({"Models": [{"ID": "m", "URL": "/m", "DataStore": "nope"}]}, "Models[0].DataStore: unknown datastore 'nope'"),
    ({"Models": [{"ID": "m", "URL": "/m", "ID2": 1}]}, "Models[0].ID2: unknown key"),
    ({"Models": [{"ID": "m", "URL": "/m", "id": "n"}]}, "Models[0].id: given twice"),
    ({"Models": [{"ID": "m", "URL": "/m"}], "Endpoint": {"Port": 70000}}, "Endpoint.Port: must be 0..65535"),
    ({"Models": [{"ID": "m", "URL": "/m"}], "Endpoint": {"BufferSize": 0}}, "Endpoint.BufferSize: must be > 0"),
    ({"Models": [{"ID": "m", "URL": "/m", "Inputs": [{"Name": "batch_size"}]}]}, "reserved request key"),
    ({"Models": [{"ID": "m", "URL": "/m", "Inputs": [{"Name": "a", "DataType": "complex"}]}]},
     "Models[0].Inputs[0].DataType: unknown type 'complex'"),
    ({"Models": [{"ID": "m", "URL": "/m", "DataStore": "d"}],
      "Datastores": [{"ID": "d", "Connection": "c"}]}, "Datastores[0].Connection: unknown connection 'c'"),
    ({"Models": [{"ID": "m", "URL": "/m"}], "Connections": [{"ID": "c", "Hostnames": "h"}],
      "Datastores": [{"ID": "d", "Connection": "c", "Dataset": "s"}]}, "Datastores[0].Namespace: is required"),
    ({"Models": [{"ID": "m", "URL": "/m"}], "Connections": [{"ID": "c"}], "Datastores": [{"ID": "d"}]},
     "Connections[0].Hostnames: is required"),
    ({"Models": [{"ID": "m", "URL": "/m"}], "Connections": [{"ID": "c", "Hostnames": "h", "Kind": "memcached"}],
      "Datastores": [{"ID": "d"}]}, "Connections[0].Kind: must be one of aerospike, redis"),
    (["not", "a", "mapping"], "the config must be a mapping"),
]


@pytest.mark.parametrize(("raw", "message"), BAD, ids=[m for _, m in BAD])
def test_invalid_config_names_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert message in str(info.value)


def test_missing_env_var_names_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLY_NOPE", raising=False)
    with pytest.raises(ConfigError, match=r"Models\[0\]\.URL: environment variable MLY_NOPE is not set"):
        parse_config({"Models": [{"ID": "m", "URL": "${MLY_NOPE}/x"}]})
    assert parse_config({"Models": [{"ID": "m", "URL": "${MLY_NOPE:-/d}/x"}]}).models[0].url == "/d/x"


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("Models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_expanded_env_takes_the_type_yaml_gives_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports, sizes and flags from the environment (the container case) keep their YAML types."""
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("SIZE_MB", "64")
    monkeypatch.delenv("MLY_USE_DICT", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(
        "Endpoint:\n"
        "  Port: ${PORT}\n"
        "Models:\n"
        "  - ID: m${PORT}\n"             # text around the variable: still a string
        "    URL: /models/m\n"
        "    UseDict: ${MLY_USE_DICT:-false}\n"
        "    ReloadIntervalSec: ${RELOAD_S:-0.5}\n"
        "    Transformer: \"${PORT}\"\n"  # quoted: a string, as written
        "    DataStore: c\n"
        "Datastores:\n"
        "  - ID: c\n"
        "    Cache: {SizeMb: 1}\n"
        "  - ID: d\n"
        "    Cache:\n"
        "      SizeMb: ${SIZE_MB}\n"
    )
    config = load_config(path)
    assert config.endpoint.port == 8080
    model = config.models[0]
    assert (model.id, model.use_dict, model.reload_interval_sec, model.transformer) == ("m8080", False, 0.5, "8080")
    assert config.datastores[1].cache is not None and config.datastores[1].cache.size_mb == 64


def test_expanded_env_of_the_wrong_type_still_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "eighty")
    path = tmp_path / "config.yaml"
    path.write_text("Endpoint:\n  Port: ${PORT}\nModels:\n  - ID: m\n    URL: /m\n")
    with pytest.raises(ConfigError, match=r"Endpoint\.Port: must be an integer, got 'eighty'"):
        load_config(path)


def test_max_batch_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"Endpoint\.MaxBatchSize: must be > 0"):
        parse_config({"Endpoint": {"MaxBatchSize": 0}, "Models": [{"ID": "m", "URL": "/m"}]})
    assert parse_config({"Models": [{"ID": "m", "URL": "/m"}]}).endpoint.max_batch_size == 10_000
