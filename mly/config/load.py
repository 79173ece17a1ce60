"""Read a YAML config into ``schema.Config``: validated once, errors name the key path.

YAML keys match the Go names case-insensitively (the Go example writes ``id``,
``url``, ``useDict``, ``keyfields``), ``${VAR}`` / ``${VAR:-default}`` expand
from the environment, and unknown keys are rejected rather than ignored, so a
typo such as ``Precison`` fails at start instead of silently changing keys.
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from mly.config.ranges import check_ranges
from mly.config.schema import Config, StreamConfig, go_name
from mly.config.sharing import validate_store_sharing
from mly.errors import ConfigError

__all__ = ["load_config", "parse_config", "parse_section", "parse_test_block"]

T = TypeVar("T")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_INPUT_TYPES = {"", "string", "int", "int32", "int64", "float", "float32", "float64", "bool"}


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate a YAML config file (a local path or ``file://`` URL)."""
    text_path = str(path)
    if text_path.startswith("file://"):
        text_path = text_path[len("file://") :]
    try:
        text = Path(text_path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config {text_path}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{text_path} is not valid YAML: {exc}") from exc
    return parse_config(raw, base_dir=Path(text_path).resolve().parent)


def parse_config(raw: Any, *, base_dir: Path | None = None) -> Config:
    """Build a ``Config`` from parsed YAML/JSON; relative model URLs resolve against ``base_dir``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("", "the config must be a mapping at the top level")
    config = _convert(_expand_env(raw, ""), Config, "")
    if base_dir is not None:
        config = _resolve_urls(config, base_dir)
    validate(config)
    check_ranges(config)  # after the rules above, whose messages say more for the values they refuse
    return config


def parse_section(raw: Any, tp: Any, path: str) -> Any:
    """Convert one part of a config (e.g. a meta/config ``Inputs`` list) to its schema type."""
    return _convert(raw, tp, path)


class _PlainWithEnv(str):
    """An unquoted YAML scalar holding ``${VAR}``: once expanded it takes the type the
    YAML would give the expanded text written literally (``Port: ${PORT}`` is an int),
    while a quoted one (``"${PORT}"``) stays a string, as written."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver("!mly/env", re.compile(r".*\$\{"), None)
_Loader.add_constructor("!mly/env", lambda loader, node: _PlainWithEnv(loader.construct_scalar(node)))


def _plain_value(text: str) -> Any:
    """``text`` typed as a plain YAML scalar (int, float, bool, null or str)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if value is None or isinstance(value, (bool, int, float, str)) else text


_TEST_KEYS = {"test": "Test", "single": "Single", "singlebatch": "SingleBatch", "batch": "Batch"}


def parse_test_block(raw: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """A model's ``Test`` block (Go's self-test settings) with canonical key names, checked."""
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        name = _TEST_KEYS.get(str(key).lower())
        at = f"{where}.Test.{key}"
        if name is None:
            raise ConfigError(at, f"unknown key (known: {', '.join(_TEST_KEYS.values())})")
        if name in ("Test", "SingleBatch") and not isinstance(value, bool):
            raise ConfigError(at, f"must be true or false, got {value!r}")
        if name in ("Single", "Batch") and value is not None and not isinstance(value, Mapping):
            raise ConfigError(at, f"must be a mapping of input name to value, got {value!r}")
        if name == "Batch" and value and not all(isinstance(v, list) and v for v in value.values()):
            raise ConfigError(at, "must map each input to a non-empty list of values")
        out[name] = value
    return out


def _expand_env(value: Any, path: str) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(path, f"environment variable {name} is not set (use ${{{name}:-default}})")

        expanded = _ENV.sub(replace, value)
        return _plain_value(expanded) if isinstance(value, _PlainWithEnv) else expanded
    if isinstance(value, Mapping):
        return {k: _expand_env(v, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, options[0], path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        text = str(value).lower() if value is not None else ""
        if text not in allowed:
            raise ConfigError(path, f"must be one of {', '.join(allowed)}, got {value!r}")
        return text
    if origin is tuple:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise ConfigError(path, f"must be a list, got {type(value).__name__}")
        item_type = typing.get_args(tp)[0]
        return tuple(_convert(v, item_type, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"must be a mapping, got {type(value).__name__}")
        return dict(value)
    if isinstance(tp, type) and is_dataclass(tp):
        return _convert_dataclass(value, tp, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (Mapping, list)):
            raise ConfigError(path, f"must be a string, got {type(value).__name__}")
        return "" if value is None else str(value)
    if tp is Any:
        return value
    raise ConfigError(path, f"unsupported config type {tp!r}")  # pragma: no cover - schema bug


def _convert_dataclass(value: Any, cls: type[T], path: str) -> T:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a mapping, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    by_key = {go_name(f).lower(): f for f in fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, item in value.items():
        f = by_key.get(str(key).lower())
        key_path = _join(path, str(key))
        if f is None:
            known = ", ".join(go_name(x) for x in fields(cls))  # type: ignore[arg-type]
            raise ConfigError(key_path, f"unknown key (known: {known})")
        if f.name in seen:
            raise ConfigError(key_path, f"given twice (also as {seen[f.name]!r})")
        seen[f.name] = str(key)
        kwargs[f.name] = _convert(item, hints[f.name], _join(path, go_name(f)))
    return cls(**kwargs)


def _resolve_urls(config: Config, base_dir: Path) -> Config:
    """Relative model paths (and ``TLSCAFile``) are relative to the config file, not the working directory."""
    import dataclasses

    models = []
    for model in config.models:
        url = model.url
        if url and "://" not in url and not os.path.isabs(url):
            url = str((base_dir / url).resolve())
        stream = model.stream
        if stream is not None and stream.url:
            path = stream.url[len("file://"):] if stream.url.startswith("file://") else stream.url
            if "://" not in path:
                stream = dataclasses.replace(stream, url=str((base_dir / path).resolve()))
        models.append(dataclasses.replace(model, url=url, stream=stream))
    connections = tuple(
        dataclasses.replace(c, tls_ca_file=str((base_dir / c.tls_ca_file).resolve()))
        if c.tls_ca_file and not os.path.isabs(c.tls_ca_file) else c
        for c in config.connections
    )
    return dataclasses.replace(config, models=tuple(models), connections=connections)


def _validate_stream(stream: StreamConfig, where: str) -> None:
    if not stream.url:
        raise ConfigError(f"{where}.URL", "is required: the file the log is written to")
    scheme = stream.url.split("://", 1)[0] if "://" in stream.url else ""
    if scheme and scheme != "file":
        raise ConfigError(f"{where}.URL", f"must be a local file path or file:// URL, got {stream.url!r}")
    if not 0 < stream.sample_rate <= 1:
        raise ConfigError(f"{where}.SampleRate", f"must be > 0 and <= 1, got {stream.sample_rate}")
    if stream.queue_size < 1:
        raise ConfigError(f"{where}.QueueSize", f"must be >= 1, got {stream.queue_size}")
    rotation = stream.rotation
    if rotation is not None:
        for key, value in (("EveryMs", rotation.every_ms), ("MaxEntries", rotation.max_entries),
                           ("Keep", rotation.keep)):
            if value < 0:
                raise ConfigError(f"{where}.Rotation.{key}", f"must be >= 0, got {value}")
        if not rotation.every_ms and not rotation.max_entries:
            raise ConfigError(f"{where}.Rotation", "needs EveryMs or MaxEntries (or leave Rotation out)")


def validate(config: Config) -> None:
    """Cross-field rules; each error names the first key at fault."""
    if not config.models:
        raise ConfigError("Models", "at least one model is required")
    seen: dict[str, int] = {}
    for i, model in enumerate(config.models):
        where = f"Models[{i}]"
        if not model.id:
            raise ConfigError(f"{where}.ID", "is required")
        if "/" in model.id:
            raise ConfigError(f"{where}.ID", f"must not contain '/', got {model.id!r}")
        if model.id in seen:
            raise ConfigError(f"{where}.ID", f"duplicate model ID {model.id!r} (also Models[{seen[model.id]}])")
        seen[model.id] = i
        if not model.url:
            raise ConfigError(f"{where}.URL", f"is required (model {model.id!r})")
        if model.datastore and config.datastore(model.datastore) is None:
            raise ConfigError(f"{where}.DataStore", f"unknown datastore {model.datastore!r}")
        parse_test_block(model.test, where)
        if model.reload_interval_sec < 0:
            raise ConfigError(f"{where}.ReloadIntervalSec", "must be >= 0 (0 turns polling off)")
        names: set[str] = set()
        for j, field_ in enumerate(model.inputs):
            at = f"{where}.Inputs[{j}]"
            if not field_.name:
                raise ConfigError(f"{at}.Name", "is required")
            if field_.name in names:
                raise ConfigError(f"{at}.Name", f"duplicate input {field_.name!r}")
            names.add(field_.name)
            if field_.precision < 0:
                raise ConfigError(f"{at}.Precision", "must be >= 0")
            if field_.precision > 15:
                raise ConfigError(f"{at}.Precision", "must be <= 15 (float64 has no more digits)")
            if field_.data_type.lower() not in _INPUT_TYPES:
                raise ConfigError(f"{at}.DataType", f"unknown type {field_.data_type!r}")
        for name in ("batch_size", "cache_key"):
            if name in names:
                raise ConfigError(f"{where}.Inputs", f"{name!r} is a reserved request key")
        if model.stream is not None:
            _validate_stream(model.stream, f"{where}.Stream")
        memo = model.response_memo
        if memo is not None:
            if memo.size_mb < 1:
                raise ConfigError(f"{where}.ResponseMemo.SizeMb", f"must be >= 1, got {memo.size_mb}")
            if memo.max_body_bytes < 1:
                raise ConfigError(f"{where}.ResponseMemo.MaxBodyBytes", f"must be >= 1, got {memo.max_body_bytes}")
            if model.stream is not None:
                # A memoised answer skips the pipeline that offers every answer to the log.
                raise ConfigError(f"{where}.ResponseMemo", "cannot be used with Stream (every answer must be logged)")
    for i, conn in enumerate(config.connections):
        where = f"Connections[{i}]"
        if not conn.id:
            raise ConfigError(f"{where}.ID", "is required")
        if not conn.hosts:
            raise ConfigError(f"{where}.Hostnames", f"is required (connection {conn.id!r})")
        try:
            conn.seeds  # noqa: B018 - parsed for its errors
        except ValueError as exc:
            raise ConfigError(f"{where}.Hostnames", str(exc)) from None
        if conn.cluster and conn.kind != "redis":
            raise ConfigError(f"{where}.Cluster", "applies to Redis only (an Aerospike client finds its cluster itself)")
        if conn.kind != "redis":
            if conn.tls:
                raise ConfigError(f"{where}.TLS", "applies to Redis connections only")
            # The Aerospike client logs in only with both, and silently ignores a user alone.
            for key, given, other in (("Password", conn.password, conn.username),
                                      ("Username", conn.username, conn.password)):
                if other and not given:
                    raise ConfigError(f"{where}.{key}", f"is required with {'Username' if key == 'Password' else 'Password'} "
                                                        f"on an Aerospike connection ({conn.id!r})")
        if conn.tls_ca_file and not conn.tls:
            raise ConfigError(f"{where}.TLSCAFile", "needs TLS: true")
        if conn.cluster and conn.database:
            raise ConfigError(f"{where}.Database", "must be 0 with Cluster: true (a Redis Cluster has only database 0)")
        if not 0 <= conn.port <= 65535:
            raise ConfigError(f"{where}.Port", f"must be 0..65535, got {conn.port}")
    if config.connections and not config.datastores:
        raise ConfigError("Datastores", "Connections are configured but no Datastores use them")
    ds_seen: set[str] = set()
    for i, ds in enumerate(config.datastores):
        where = f"Datastores[{i}]"
        if not ds.id:
            raise ConfigError(f"{where}.ID", "is required")
        if ds.id in ds_seen:
            raise ConfigError(f"{where}.ID", f"duplicate datastore ID {ds.id!r}")
        ds_seen.add(ds.id)
        if ds.cache is not None and ds.cache.size_mb < 0:
            raise ConfigError(f"{where}.Cache.SizeMb", "must be >= 0")
        if ds.time_to_live_ms < 0:
            raise ConfigError(f"{where}.TimeToLiveMs", "must be >= 0")
        if ds.retry_time_ms < 0:
            raise ConfigError(f"{where}.RetryTimeMs", "must be >= 0")
        if ds.connection:
            l1 = config.connection(ds.connection)
            if l1 is None:
                raise ConfigError(f"{where}.Connection", f"unknown connection {ds.connection!r}")
            if not ds.dataset:
                raise ConfigError(f"{where}.Dataset", "is required when Connection is set")
            if l1.kind == "aerospike" and not ds.namespace:
                raise ConfigError(f"{where}.Namespace", "is required for an Aerospike connection")
        if ds.l2 is not None and ds.l2.connection:
            if not ds.connection:
                raise ConfigError(f"{where}.L2", "needs an L1 Connection")
            if config.connection(ds.l2.connection) is None:
                raise ConfigError(f"{where}.L2.Connection", f"unknown connection {ds.l2.connection!r}")
    for key, value in ((config.metrics.prometheus or {}) if config.metrics is not None else {}).items():
        at = f"Metrics.Prometheus.{key}"
        if str(key).lower() != "modelidletimebuckets":
            raise ConfigError(at, "unknown key (known: ModelIdletimeBuckets)")
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in value
        ):  # +Inf is every histogram's last bucket already: a second one would break the exposition
            raise ConfigError(at, f"must be a list of positive finite numbers (nanoseconds), got {value!r}")
    ep = config.endpoint
    if not 0 <= ep.port <= 65535:
        raise ConfigError("Endpoint.Port", f"must be 0..65535, got {ep.port}")
    if ep.buffer_size <= 0:
        raise ConfigError("Endpoint.BufferSize", "must be > 0")
    if ep.max_batch_size <= 0:
        raise ConfigError("Endpoint.MaxBatchSize", "must be > 0")
    for key, value in (("InferenceThreads", ep.inference_threads), ("TFIntraOpThreads", ep.tf_intra_op_threads),
                       ("TFInterOpThreads", ep.tf_inter_op_threads)):
        if value < (0 if key == "InferenceThreads" else -1):
            raise ConfigError(f"Endpoint.{key}", f"must be >= {0 if key == 'InferenceThreads' else -1}, got {value}")
    if ep.write_timeout_ms <= 1 and ep.write_timeout <= 0:
        raise ConfigError("Endpoint.WriteTimeoutMs", "must be > 1")
    if ep.http2_max_concurrent_streams < 1:
        raise ConfigError("Endpoint.HTTP2MaxConcurrentStreams", f"must be >= 1, got {ep.http2_max_concurrent_streams}")
    for key, value in (("HTTP2StreamWindow", ep.http2_stream_window),
                       ("HTTP2ConnectionWindow", ep.http2_connection_window)):
        if not 65535 <= value <= 2**31 - 1:  # RFC 9113 §6.5.2, §6.9.1
            raise ConfigError(f"Endpoint.{key}", f"must be 65535..2147483647, got {value}")
    if ep.idle_timeout_ms < 0:
        raise ConfigError("Endpoint.IdleTimeoutMs", f"must be >= 0, got {ep.idle_timeout_ms}")
    for key, value in (("ReadTimeoutMs", ep.read_timeout_ms), ("MaxHeaderBytes", ep.max_header_bytes),
                       ("MaxConnections", ep.max_connections)):
        if value < 0:
            raise ConfigError(f"Endpoint.{key}", f"must be >= 0, got {value}")
    if ep.stream_max_in_flight < 1:
        raise ConfigError("Endpoint.StreamMaxInFlight", f"must be >= 1, got {ep.stream_max_in_flight}")
    validate_store_sharing(config)
    if bool(config.tls.cert_file) != bool(config.tls.key_file):
        missing = "KeyFile" if config.tls.cert_file else "CertFile"
        raise ConfigError(f"TLS.{missing}", "is required when the other TLS file is set")
