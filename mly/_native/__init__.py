"""Cython hot paths. An ImportError here is fatal by design: mly never falls
back to slow pure-Python code. Rebuild with ``pip install -e .``."""

from __future__ import annotations

try:
    from mly._native import encode, fnv, keys, mru, redis_wire
except ImportError as exc:  # pragma: no cover - build problem
    raise ImportError(
        "mly._native is not compiled: reinstall mly with `pip install -e .` "
        f"(Cython and a C compiler are needed) ({exc})"
    ) from exc

__all__ = ["encode", "fnv", "keys", "mru", "redis_wire"]
