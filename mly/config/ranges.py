"""The range of every numeric config setting, checked once when the config loads.

A value its consumer cannot take used to pass validation and fail later, away
from the config: ``HTTP2MaxConcurrentStreams: 5000000000`` broke every HTTP/2
connection (a SETTINGS value has 32 bits) while HTTP/1.1 kept answering, and
``Timeout.Total: 0`` crashed ``mly-fast check`` with a traceback. Each numeric
field of the schema has its range here (a test keeps the table complete); a
field without one still gets Go's ``int`` range, or "finite" for a float.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields, is_dataclass
from functools import cache
from typing import Any

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
    ResponseMemoConfig,
    StreamConfig,
    StreamRotation,
    Timeout,
    TimeoutAdjustments,
    go_name,
)
from mly.errors import ConfigError

__all__ = ["RANGES", "Range", "check_ranges", "numeric_fields"]

INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MIB_MAX = INT64_MAX >> 20
"""A budget in MiB whose byte count still fits the memory tier's 64-bit size."""
DURATION_MS_MAX = INT64_MAX // 1_000_000
"""Go's ``time.Duration`` (int64 nanoseconds) in milliseconds."""
TTL_MS_MAX = INT32_MAX * 1000
"""Aerospike keeps a record's TTL in 32-bit seconds (the top values mean "never" and "keep")."""
TIMEOUT_MS_MAX = INT32_MAX
"""The Aerospike client keeps its connect, socket and total timeouts in 32-bit milliseconds."""
H2_HEADER_SLACK = 2048
"""Added to ``MaxHeaderBytes`` for HTTP/2's header list size (``mly.http.protocol.h2_settings``)."""


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive bounds; ``in_ms`` checks a ``Timeout`` value after its ``Unit`` is applied."""

    lo: float
    hi: float
    in_ms: bool = False


GO_INT = Range(INT64_MIN, INT64_MAX)
ANY_FINITE = Range(-math.inf, math.inf)

RANGES: dict[tuple[type, str], Range] = {
    # Redis takes Total (each operation) and Connection (connect) as socket timeouts, where 0 means a
    # non-blocking socket; the lookup deadline is Total. Aerospike's Socket 0 means "no socket timeout".
    (Timeout, "Connection"): Range(1, TIMEOUT_MS_MAX, in_ms=True),
    (Timeout, "Socket"): Range(0, TIMEOUT_MS_MAX, in_ms=True),
    (Timeout, "Total"): Range(1, TIMEOUT_MS_MAX, in_ms=True),
    (Connection, "Port"): Range(0, 65535),
    (Connection, "Database"): Range(0, INT32_MAX),
    (CacheConfig, "SizeMb"): Range(0, MIB_MAX),
    # 2 x MaxEntries x EntrySize sizes the tier when SizeMb is 0: with both at most INT32_MAX it fits.
    (CacheConfig, "MaxEntries"): Range(0, INT32_MAX),
    (CacheConfig, "EntrySize"): Range(0, INT32_MAX),
    (CacheConfig, "Shards"): Range(0, INT32_MAX),
    (L2Reference, "TimeToLiveMs"): Range(0, TTL_MS_MAX),
    (L2Reference, "RetryTimeMs"): Range(0, TTL_MS_MAX),
    (Datastore, "TimeToLiveMs"): Range(0, TTL_MS_MAX),
    (Datastore, "RetryTimeMs"): Range(0, TTL_MS_MAX),
    (InputField, "Index"): Range(0, INT32_MAX),
    (InputField, "Precision"): Range(0, 15),
    (OutputField, "Index"): Range(0, INT32_MAX),
    # Go's batcher settings: 0 or less means "the default" (BatchWait < 0 turns batching off).
    (TimeoutAdjustments, "Increment"): GO_INT,
    (TimeoutAdjustments, "Max"): GO_INT,
    (BatchConfig, "MaxBatchSize"): GO_INT,
    (BatchConfig, "BatchWait"): GO_INT,
    (BatchConfig, "MaxEvaluatorConcurrency"): GO_INT,
    (BatchConfig, "MaxQueuedBatches"): GO_INT,
    (StreamRotation, "EveryMs"): Range(0, DURATION_MS_MAX),
    (StreamRotation, "MaxEntries"): Range(0, INT64_MAX),
    (StreamRotation, "Keep"): Range(0, INT64_MAX),
    (StreamConfig, "SampleRate"): Range(0, 1),
    (StreamConfig, "QueueSize"): Range(1, INT64_MAX),
    (ResponseMemoConfig, "SizeMb"): Range(1, MIB_MAX),
    (ResponseMemoConfig, "MaxBodyBytes"): Range(1, INT64_MAX),
    (ModelConfig, "BatchWaitMicros"): Range(INT64_MIN // 1000 + 1, INT64_MAX // 1000),  # x 1000: Go nanoseconds
    (ModelConfig, "ReloadIntervalSec"): Range(0, DURATION_MS_MAX // 1000),
    (EndpointConfig, "Port"): Range(0, 65535),
    (EndpointConfig, "ReadTimeoutMs"): Range(0, DURATION_MS_MAX),
    (EndpointConfig, "WriteTimeoutMs"): Range(0, DURATION_MS_MAX),
    (EndpointConfig, "WriteTimeout"): Range(0, INT64_MAX),  # Go nanoseconds; 0 = WriteTimeoutMs
    (EndpointConfig, "MaxHeaderBytes"): Range(0, UINT32_MAX - H2_HEADER_SLACK),  # SETTINGS_MAX_HEADER_LIST_SIZE
    (EndpointConfig, "PoolMaxSize"): GO_INT,  # Go's only
    (EndpointConfig, "BufferSize"): Range(1, INT64_MAX),
    (EndpointConfig, "MaxBatchSize"): Range(1, INT64_MAX),
    (EndpointConfig, "MaxEvaluatorConcurrency"): GO_INT,  # Go's only
    (EndpointConfig, "MaxEvaluatorWaitMs"): GO_INT,  # Go's only
    (EndpointConfig, "MaxEvaluatorWait"): GO_INT,  # Go's only
    (EndpointConfig, "InferenceThreads"): Range(0, INT32_MAX),
    (EndpointConfig, "TFIntraOpThreads"): Range(-1, INT32_MAX),  # TensorFlow's thread counts are int32
    (EndpointConfig, "TFInterOpThreads"): Range(-1, INT32_MAX),
    (EndpointConfig, "HTTP2MaxConcurrentStreams"): Range(1, UINT32_MAX),  # a 32-bit SETTINGS value
    (EndpointConfig, "HTTP2StreamWindow"): Range(65535, INT32_MAX),  # RFC 9113 §6.5.2
    (EndpointConfig, "HTTP2ConnectionWindow"): Range(65535, INT32_MAX),  # RFC 9113 §6.9.1
    (EndpointConfig, "IdleTimeoutMs"): Range(0, DURATION_MS_MAX),
    (EndpointConfig, "MaxConnections"): Range(0, INT32_MAX),  # 0: no bound; more than any process has fds
    (EndpointConfig, "StreamMaxInFlight"): Range(1, INT64_MAX),
}


@cache
def numeric_fields(cls: type) -> tuple[tuple[str, str, type], ...]:
    """``(attribute, Go name, int or float)`` of each numeric field of a schema dataclass."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, go_name(f), hints[f.name]) for f in fields(cls) if hints[f.name] in (int, float))


def _check(value: int | float, rule: Range, path: str, timeout: Timeout | None) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"must be a finite number, got {value}")
    if rule.in_ms and timeout is not None:
        ms = timeout.ms(int(value))
        if not rule.lo <= ms <= rule.hi:
            given = f"{value}" if timeout.unit == "ms" else f"{value} {timeout.unit} = {ms} ms"
            raise ConfigError(path, f"must be {rule.lo}..{rule.hi} ms, got {given}")
        return
    if not rule.lo <= value <= rule.hi:
        raise ConfigError(path, f"must be {rule.lo}..{rule.hi}, got {value}")


def _walk(value: Any, path: str) -> None:
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]")
        return
    if not is_dataclass(value) or isinstance(value, type):
        return
    cls = type(value)
    for name, key, tp in numeric_fields(cls):
        rule = RANGES.get((cls, key), GO_INT if tp is int else ANY_FINITE)
        _check(getattr(value, name), rule, f"{path}.{key}" if path else key,
               value if isinstance(value, Timeout) else None)
    for f in fields(value):
        item = getattr(value, f.name)
        if isinstance(item, (tuple, list)) or (is_dataclass(item) and not isinstance(item, type)):
            _walk(item, f"{path}.{go_name(f)}" if path else go_name(f))


def check_ranges(config: Config) -> None:
    """``ConfigError`` naming the first numeric setting outside its range."""
    _walk(config, "")
