"""Client options: the Go client's ``With...`` options as one frozen dataclass.

Go name -> field: ``WithCacheSize`` -> ``cache_size_mb``, ``WithCacheScope`` ->
``cache_scope``, ``WithHashValidation`` -> ``hash_validation``,
``WithRemoteConfig`` -> ``remote_config``, ``WithDictionary`` -> ``dictionary``,
``WithDataStorer`` -> ``datastore``, ``WithConnectionSharing`` -> ``shared_stores``;
``Config.MaxRetry`` -> ``max_retries``. Every value is checked once, here, and a
bad one is a ``ValueError`` naming the field.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from mly.common.dictionary import Dictionary
from mly.common.meta import ModelMeta

if TYPE_CHECKING:
    from mly.cache.tiered import TieredCache
    from mly.client._shared import SharedStores

__all__ = ["CacheScope", "ClientOptions"]


class CacheScope(enum.Flag):
    """Which cache tiers the client reads (Go bit values: local 1, L1 2, L2 4)."""

    NONE = 0
    LOCAL = 1
    L1 = 2
    L2 = 4
    ALL = LOCAL | L1 | L2


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    cache_size_mb: int | None = None
    """Byte budget of the local (in-process) tier; default: the model's ``Cache.SizeMb``."""
    cache_scope: CacheScope = CacheScope.ALL
    """Tiers to use, of those the model's datastore has. Unlike Go, a scope without
    LOCAL is allowed: lookups then go straight to L1/L2."""
    hash_validation: bool = True
    """Entries of another dictionary are never served. mly always validates
    (a stale prediction is never returned), so only ``True`` is accepted."""
    remote_config: ModelMeta | Mapping[str, Any] | None = None
    """Use this ``meta/config`` (parsed or JSON) instead of fetching it; ``cache_scope``
    and ``cache_size_mb`` still apply."""
    dictionary: Dictionary | Mapping[str, Any] | None = None
    """Use this ``meta/dictionary`` (parsed or JSON) instead of fetching it."""
    datastore: TieredCache | None = None
    """Use this cache (built with ``mly.cache.build_datastore`` or by hand) instead
    of building one from ``meta/config``; the client does not close it."""
    shared_stores: SharedStores | None = None
    """Share Redis/Aerospike connections with the other clients given the same object."""
    store_passwords: Mapping[str, str] | None = field(default=None, repr=False)
    """Connection ID -> password of a secured Redis or Aerospike in the model's datastore: ``meta/config``
    never carries secrets (its ``Username`` and ``TLS`` do come from the server)."""
    write_back_remote: bool = False
    """Also write the server's answers to L1/L2. Off by default, as in Go: the
    server writes its own stores. Turn it on for a server that does not."""
    timeout_s: float = 5.0
    """Longest wait for one HTTP answer (connect, write and read each)."""
    connect_timeout_s: float = 1.0
    max_retries: int = 3
    """Extra attempts after a transport error (refused, reset, timed out); never after
    an HTTP error status. A retry while every host backs off waits for the first
    backoff to end (for at most ``timeout_s`` per request in all)."""
    host_backoff_s: float = 0.05
    """First wait before a host that refused a connection is probed again; doubles
    per failed probe up to ``host_backoff_cap_s`` (Go starts at its 50 ms request timeout)."""
    host_backoff_cap_s: float = 5.0
    default_cache_size_mb: int = 32
    """Local tier budget when neither ``cache_size_mb`` nor the model's ``Cache`` gives one."""

    def __post_init__(self) -> None:
        if not isinstance(self.cache_scope, CacheScope):
            raise ValueError(f"cache_scope: expected a CacheScope, got {self.cache_scope!r}")
        if self.hash_validation is not True:
            raise ValueError("hash_validation: mly never serves an entry of another dictionary; only True is accepted")
        for name in ("cache_size_mb", "default_cache_size_mb"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name}: expected a positive integer (MB), got {value!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries: expected an integer >= 0, got {self.max_retries!r}")
        for name in ("timeout_s", "connect_timeout_s", "host_backoff_s", "host_backoff_cap_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        if self.host_backoff_cap_s < self.host_backoff_s:
            raise ValueError("host_backoff_cap_s: must be >= host_backoff_s")
        if self.remote_config is not None and not isinstance(self.remote_config, (ModelMeta, Mapping)):
            raise ValueError(f"remote_config: expected ModelMeta or meta/config JSON, got {type(self.remote_config).__name__}")
        if self.dictionary is not None and not isinstance(self.dictionary, (Dictionary, Mapping)):
            raise ValueError(f"dictionary: expected Dictionary or meta/dictionary JSON, got {type(self.dictionary).__name__}")

    @classmethod
    def of(cls, options: ClientOptions | None, overrides: Mapping[str, Any]) -> ClientOptions:
        """``options`` with keyword ``overrides``; an unknown keyword names itself."""
        known = {f.name for f in fields(cls)}
        for name in overrides:
            if name not in known:
                raise TypeError(f"unknown client option {name!r} (options: {', '.join(sorted(known))})")
        base = {f.name: getattr(options, f.name) for f in fields(cls)} if options is not None else {}
        return cls(**{**base, **overrides})
