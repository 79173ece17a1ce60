"""The Go viant/mly wire format: URIs, reserved request keys, status strings."""

from __future__ import annotations

__all__ = [
    "BATCH_SIZE",
    "CACHE_KEY",
    "CONFIG_URI",
    "HEALTH_URI",
    "KEY_DELIMITER",
    "META_CONFIG_URI",
    "META_DICTIONARY_URI",
    "MODEL_URI",
    "STATUS_CACHED",
    "STATUS_ERROR",
    "STATUS_OK",
]

MODEL_URI = "/v1/api/model/{id}/eval"
META_CONFIG_URI = "/v1/api/model/{id}/meta/config"
META_DICTIONARY_URI = "/v1/api/model/{id}/meta/dictionary"
CONFIG_URI = "/v1/api/config"
HEALTH_URI = "/v1/api/health"
METRIC_URI = "/v1/api/metric/"

BATCH_SIZE = "batch_size"
CACHE_KEY = "cache_key"
RESERVED_KEYS = frozenset({BATCH_SIZE, CACHE_KEY})

KEY_DELIMITER = "/"

STATUS_OK = "ok"
STATUS_CACHED = "cached"
STATUS_ERROR = "error"
