"""The server config as frozen dataclasses, with the Go viant/mly names and defaults.

Each field carries its Go/YAML name in ``metadata["go"]``; ``config.load`` matches
YAML keys to it case-insensitively and ``to_json`` writes it back, so
``/v1/api/config`` and ``meta/config`` keep the Go field names. This module is
TensorFlow-free: the client reuses the datastore and connection types.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Literal

from mly.config.seeds import parse_seeds

__all__ = [
    "BatchConfig",
    "CacheConfig",
    "Config",
    "Connection",
    "Datastore",
    "EndpointConfig",
    "InputField",
    "L2Reference",
    "MetricsConfig",
    "ModelConfig",
    "OutputField",
    "ResponseMemoConfig",
    "StoreField",
    "StreamConfig",
    "StreamRotation",
    "TLSConfig",
    "Timeout",
    "TimeoutAdjustments",
    "go_name",
    "to_json",
]

ConnectionKind = Literal["aerospike", "redis"]
TimeUnit = Literal["ms", "sec", "min"]

DEFAULT_PORT = 8080
DEFAULT_BUFFER_SIZE = 131072
DEFAULT_MAX_BATCH_SIZE = 10_000
DEFAULT_TTL_MS = 900_000
DEFAULT_RETRY_TIME_MS = 5_000
DEFAULT_RELOAD_INTERVAL_SEC = 60
DEFAULT_AEROSPIKE_PORT = 3000
DEFAULT_REDIS_PORT = 6379


def setting(go: str, default: Any = MISSING, *, factory: Any = MISSING, omitempty: bool = False,
            secret: bool = False) -> Any:
    """A dataclass field that knows its Go name (and whether Go omits it when empty).

    A ``secret`` is never written by ``to_json``: the config and ``meta/config``
    endpoints show everything else of a connection.
    """
    meta = {"go": go, "omitempty": omitempty, "secret": secret}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


def go_name(f: Any) -> str:
    return str(f.metadata.get("go", f.name))


@dataclass(frozen=True, slots=True)
class Timeout:
    unit: TimeUnit = setting("Unit", "ms")
    connection: int = setting("Connection", 800)
    socket: int = setting("Socket", 400)
    total: int = setting("Total", 450)

    def ms(self, value: int) -> int:
        return value * {"ms": 1, "sec": 1000, "min": 60_000}[self.unit]


@dataclass(frozen=True, slots=True)
class Connection:
    """An external store: Aerospike (Go's only kind) or Redis (mly's addition)."""

    id: str = setting("ID", "")
    hostnames: str = setting("Hostnames", "")
    port: int = setting("Port", 0)
    timeout: Timeout = setting("Timeout", factory=Timeout)
    kind: ConnectionKind = setting("Kind", "aerospike", omitempty=True)
    database: int = setting("Database", 0, omitempty=True)
    cluster: bool = setting("Cluster", False, omitempty=True)
    """Redis only: the entries of ``Hostnames`` are startup nodes of a Redis Cluster."""
    username: str = setting("Username", "", omitempty=True)
    """Redis ACL user (``AUTH user password``; empty: the default user), or the Aerospike user
    (with ``Password``; a server with security enabled, which needs Enterprise Edition)."""
    password: str = setting("Password", "", omitempty=True, secret=True)
    """Redis ``AUTH`` / Aerospike password; give it as ``${VAR}``. Never shown by an endpoint."""
    tls: bool = setting("TLS", False, omitempty=True)
    """Redis over TLS, the server's certificate checked against ``TLSCAFile`` (or the system CAs)."""
    tls_ca_file: str = setting("TLSCAFile", "", omitempty=True)

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return DEFAULT_REDIS_PORT if self.kind == "redis" else DEFAULT_AEROSPIKE_PORT

    @property
    def hosts(self) -> list[str]:
        """The seed entries as written (``host`` or ``host:port``)."""
        return [h.strip() for h in self.hostnames.split(",") if h.strip()]

    @property
    def seeds(self) -> list[tuple[str, int]]:
        """``(host, port)`` per ``Hostnames`` entry; an entry's own port wins over ``Port``."""
        return parse_seeds(self.hostnames, self.effective_port)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """In-process memory tier (Go: scache). Only the byte budget matters to mly."""

    size_mb: int = setting("SizeMb", 0)
    max_entries: int = setting("MaxEntries", 0, omitempty=True)
    entry_size: int = setting("EntrySize", 0, omitempty=True)
    shards: int = setting("Shards", 0, omitempty=True)
    location: str = setting("Location", "", omitempty=True)

    @property
    def effective_size_mb(self) -> int:
        """Go's rule: 0 means 1 MB unless MaxEntries and EntrySize size it."""
        if self.size_mb > 0:
            return self.size_mb
        if self.max_entries and self.entry_size:
            return 1 + (2 * self.max_entries * self.entry_size) // (1 << 20)
        return 1


@dataclass(frozen=True, slots=True)
class L2Reference:
    connection: str = setting("Connection", "")
    namespace: str = setting("Namespace", "")
    dataset: str = setting("Dataset", "")
    time_to_live_ms: int = setting("TimeToLiveMs", 0)
    retry_time_ms: int = setting("RetryTimeMs", 0)
    read_only: bool = setting("ReadOnly", False, omitempty=True)


@dataclass(frozen=True, slots=True)
class StoreField:
    name: str = setting("Name", "")
    data_type: str = setting("DataType", "")


@dataclass(frozen=True, slots=True)
class Datastore:
    id: str = setting("ID", "")
    cache: CacheConfig | None = setting("Cache", None)
    connection: str = setting("Connection", "")
    namespace: str = setting("Namespace", "")
    dataset: str = setting("Dataset", "")
    time_to_live_ms: int = setting("TimeToLiveMs", DEFAULT_TTL_MS)
    retry_time_ms: int = setting("RetryTimeMs", DEFAULT_RETRY_TIME_MS)
    read_only: bool = setting("ReadOnly", False, omitempty=True)
    l2: L2Reference | None = setting("L2", None, omitempty=True)
    storable: str = setting("Storable", "")
    fields: tuple[StoreField, ...] | None = setting("Fields", None)
    disabled: bool = setting("Disabled", False, omitempty=True)
    debug: bool = setting("Debug", False, omitempty=True)


@dataclass(frozen=True, slots=True)
class InputField:
    name: str = setting("Name", "")
    index: int = setting("Index", 0)
    data_type: str = setting("DataType", "")
    auxiliary: bool = setting("Auxiliary", False, omitempty=True)
    wildcard: bool = setting("Wildcard", False, omitempty=True)
    precision: int = setting("Precision", 0, omitempty=True)


@dataclass(frozen=True, slots=True)
class OutputField:
    name: str = setting("Name", "")
    index: int = setting("Index", 0)
    data_type: str = setting("DataType", "")


@dataclass(frozen=True, slots=True)
class TimeoutAdjustments:
    increment: int = setting("Increment", 100_000)
    max: int = setting("Max", 0)


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """Go's batcher knobs; ``batch_wait`` is Go nanoseconds, negative turns batching off."""

    max_batch_size: int = setting("MaxBatchSize", 0)
    batch_wait: int = setting("BatchWait", 0)
    max_evaluator_concurrency: int = setting("MaxEvaluatorConcurrency", 0)
    max_queued_batches: int = setting("MaxQueuedBatches", 0)
    timeout_adjustments: TimeoutAdjustments | None = setting("TimeoutAdjustments", None, omitempty=True)
    verbose: dict[str, Any] | None = setting("Verbose", None, omitempty=True)


@dataclass(frozen=True, slots=True)
class StreamRotation:
    """When the stream log starts a new file; the old one is renamed ``<URL>.<UTC time>``."""

    every_ms: int = setting("EveryMs", 0)
    """Start a new file after this many milliseconds (Go's name); 0 = never by age."""
    max_entries: int = setting("MaxEntries", 0)
    """Start a new file after this many lines (Go's name); 0 = no limit."""
    keep: int = setting("Keep", 0, omitempty=True)
    """Rotated files kept (the oldest are removed); 0 keeps them all. Not in Go."""


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """A model's request/response log (Go's ``Stream``): JSON lines appended to a local file."""

    url: str = setting("URL", "")
    """The file (a local path or ``file://``; relative to the config file)."""
    rotation: StreamRotation | None = setting("Rotation", None, omitempty=True)
    sample_rate: float = setting("SampleRate", 1.0)
    """Fraction of eval requests logged, 0 < SampleRate <= 1. Not in Go (which logs every request)."""
    queue_size: int = setting("QueueSize", 10_000)
    """Lines waiting for the writer thread at most; more are dropped and counted. Not in Go."""


@dataclass(frozen=True, slots=True)
class ResponseMemoConfig:
    """A model's exact-request response memo (``mly.service.memo``). Not in Go."""

    size_mb: int = setting("SizeMb", 64)
    """Byte budget of the memo (MiB); entries past it are evicted, least recently used first."""
    max_body_bytes: int = setting("MaxBodyBytes", 16384)
    """Requests with a larger body (or query string) are not memoised."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    id: str = setting("ID", "")
    url: str = setting("URL", "")
    debug: bool = setting("Debug", False)
    location: str = setting("Location", "")
    dir: str = setting("Dir", "", omitempty=True)
    tags: tuple[str, ...] = setting("Tags", ("serve",))
    use_dict: bool = setting("UseDict", True)
    dict_url: str = setting("DictURL", "", omitempty=True)
    datastore: str = setting("DataStore", "")
    transformer: str = setting("Transformer", "", omitempty=True)
    batch: BatchConfig | None = setting("Batch", None, omitempty=True)
    batch_wait_micros: int = setting("BatchWaitMicros", 0, omitempty=True)
    test: dict[str, Any] | None = setting("Test", None, omitempty=True)
    inputs: tuple[InputField, ...] = setting("Inputs", ())
    key_fields: tuple[str, ...] = setting("KeyFields", (), omitempty=True)
    auxiliary: tuple[str, ...] = setting("Auxiliary", (), omitempty=True)
    outputs: tuple[OutputField, ...] = setting("Outputs", (), omitempty=True)
    output_type: str = setting("OutputType", "", omitempty=True)
    stream: StreamConfig | None = setting("Stream", None, omitempty=True)
    response_memo: ResponseMemoConfig | None = setting("ResponseMemo", None, omitempty=True)
    """Answer byte-identical repeated requests from a per-generation memo; off when absent. Not in Go."""
    reload_interval_sec: float = setting("ReloadIntervalSec", DEFAULT_RELOAD_INTERVAL_SEC)
    """Seconds between checks of the model's files for a change; 0 turns polling off."""


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    port: int = setting("Port", DEFAULT_PORT)
    read_timeout_ms: int = setting("ReadTimeoutMs", 5000)
    write_timeout_ms: int = setting("WriteTimeoutMs", 5000)
    write_timeout: int = setting("WriteTimeout", 0)
    max_header_bytes: int = setting("MaxHeaderBytes", 8192)
    pool_max_size: int = setting("PoolMaxSize", 512)
    buffer_size: int = setting("BufferSize", DEFAULT_BUFFER_SIZE)
    max_batch_size: int = setting("MaxBatchSize", DEFAULT_MAX_BATCH_SIZE)
    """Most rows one eval request may carry (``batch_size``); larger is a 413. Not in Go."""
    max_evaluator_concurrency: int = setting("MaxEvaluatorConcurrency", 5000)
    max_evaluator_wait_ms: int = setting("MaxEvaluatorWaitMs", 50)
    max_evaluator_wait: int = setting("MaxEvaluatorWait", 0)
    inference_threads: int = setting("InferenceThreads", 0, omitempty=True)
    """Threads running TensorFlow calls (all models); 0 = one per CPU core."""
    tf_intra_op_threads: int = setting("TFIntraOpThreads", 0, omitempty=True)
    """TensorFlow intra-op threads; 0 = 1 (measured fastest here, see docs/performance.md), -1 = TF's default."""
    tf_inter_op_threads: int = setting("TFInterOpThreads", 0, omitempty=True)
    """TensorFlow inter-op threads; 0 = 1, -1 = TF's default."""
    http2: bool = setting("HTTP2", True)
    """Serve cleartext HTTP/2 (prior knowledge) and, with TLS, ALPN ``h2`` on the same port. Go always does."""
    http2_max_concurrent_streams: int = setting("HTTP2MaxConcurrentStreams", 250)
    """Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS; Go's default)."""
    http2_stream_window: int = setting("HTTP2StreamWindow", 1 << 20)
    """Bytes of request body a stream may send before the app reads it (SETTINGS_INITIAL_WINDOW_SIZE)."""
    http2_connection_window: int = setting("HTTP2ConnectionWindow", 1 << 20)
    """Bytes of unread request body one HTTP/2 connection may have in flight, all streams together."""
    idle_timeout_ms: int = setting("IdleTimeoutMs", 0, omitempty=True)
    """Close a connection with no request in progress after this long; 0 = ReadTimeoutMs (Go), at least 5 s.
    Also uvicorn's HTTP/1.1 keep-alive timeout."""
    stream_max_in_flight: int = setting("StreamMaxInFlight", 64)
    """NDJSON streaming eval: request lines of one stream evaluated at once; more waits (reading pauses)."""
    access_log: bool = setting("AccessLog", False, omitempty=True)
    """One log line per eval request (model, rows, cache outcome, status, latency); ``--access-log`` too."""
    max_connections: int = setting("MaxConnections", 10_000)
    """Open connections (HTTP/1.1 and HTTP/2) past which a new one is closed at once; 0 = no bound. Not in Go."""
    forwarded_allow_ips: tuple[str, ...] = setting("ForwardedAllowIPs", (), omitempty=True)
    """Peers (addresses or networks, ``*`` for any) whose ``X-Forwarded-For``/``X-Forwarded-Proto`` are
    believed: the client address ``AllowedSubnet`` checks. Empty (the default): the socket's peer, as Go."""

    @property
    def idle_timeout_s(self) -> float:
        """Seconds a connection may sit without a request in progress."""
        return self.idle_timeout_ms / 1000 if self.idle_timeout_ms else max(5.0, self.read_timeout_ms / 1000)

    @property
    def deadline_ms(self) -> int:
        """The handler deadline: WriteTimeout (ns, if set) or WriteTimeoutMs, less 1 ms (Go)."""
        ms = self.write_timeout // 1_000_000 if self.write_timeout > 0 else self.write_timeout_ms
        return max(1, ms - 1)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    prometheus: dict[str, Any] | None = setting("Prometheus", None, omitempty=True)
    """Go's ``Metrics.Prometheus``; ``ModelIdletimeBuckets`` (ns) is the one key it has."""

    @property
    def idletime_buckets_ns(self) -> tuple[float, ...] | None:
        for key, value in (self.prometheus or {}).items():
            if str(key).lower() == "modelidletimebuckets" and value:
                return tuple(float(v) for v in value)
        return None


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert_file: str = setting("CertFile", "")
    key_file: str = setting("KeyFile", "")


@dataclass(frozen=True, slots=True)
class Config:
    models: tuple[ModelConfig, ...] = setting("Models", ())
    connections: tuple[Connection, ...] = setting("Connections", ())
    datastores: tuple[Datastore, ...] = setting("Datastores", ())
    global_batching: BatchConfig | None = setting("GlobalBatching", None, omitempty=True)
    metrics: MetricsConfig | None = setting("Metrics", None, omitempty=True)
    endpoint: EndpointConfig = setting("Endpoint", factory=EndpointConfig)
    enable_mem_prof: bool = setting("EnableMemProf", False)
    enable_cpu_prof: bool = setting("EnableCPUProf", False)
    tls: TLSConfig = setting("TLS", factory=TLSConfig)
    allowed_subnet: tuple[str, ...] = setting("AllowedSubnet", (), omitempty=True)

    def model(self, model_id: str) -> ModelConfig | None:
        return next((m for m in self.models if m.id == model_id), None)

    def datastore(self, datastore_id: str) -> Datastore | None:
        return next((d for d in self.datastores if d.id == datastore_id), None)

    def connection(self, connection_id: str) -> Connection | None:
        return next((c for c in self.connections if c.id == connection_id), None)


def _is_empty(value: Any) -> bool:
    return value in (None, "", 0, False) or (isinstance(value, (tuple, list, dict)) and not value)


def to_json(value: Any) -> Any:
    """Dataclasses -> JSON-ready values with Go field names (omitempty honoured)."""
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if (f.metadata.get("omitempty") and _is_empty(item)) or f.metadata.get("secret"):
                continue
            out[go_name(f)] = to_json(item)
        return out
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value
