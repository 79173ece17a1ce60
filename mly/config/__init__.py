"""Server config: YAML -> frozen dataclasses with the Go names and defaults."""

from mly.config.load import load_config, parse_config
from mly.config.schema import (
    BatchConfig,
    CacheConfig,
    Config,
    Connection,
    Datastore,
    EndpointConfig,
    InputField,
    L2Reference,
    ModelConfig,
    OutputField,
    StoreField,
    to_json,
)

__all__ = [
    "BatchConfig",
    "CacheConfig",
    "Config",
    "Connection",
    "Datastore",
    "EndpointConfig",
    "InputField",
    "L2Reference",
    "ModelConfig",
    "OutputField",
    "StoreField",
    "load_config",
    "parse_config",
    "to_json",
]
