"""Which HTTP/2 engine serves a connection that opened with the HTTP/2 preface.

Two engines drive the same app with the same limits: ``nghttp2`` (libnghttp2
through ``mly._native.nghttp2``, built when the library was found at install
time) and ``h2`` (the pure-Python package, the ``http2`` extra). ``nghttp2`` costs
a fraction of the CPU per request, so it serves whenever it was built; the
environment variable ``MLY_HTTP2_ENGINE=h2`` keeps the pure-Python one (to
compare them, or to rule the native one out when chasing a problem).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

from mly.errors import ConfigError
from mly.http.h2limits import h2_available

__all__ = ["ENGINES", "ENGINE_ENV", "connection_class", "h2_engine", "native_available"]

log = logging.getLogger("mly.http")

ENGINE_ENV = "MLY_HTTP2_ENGINE"
ENGINES = ("nghttp2", "h2")


def native_available() -> bool:
    """Whether ``mly._native.nghttp2`` was built (libnghttp2 found when mly was installed)."""
    return importlib.util.find_spec("mly._native.nghttp2") is not None


def h2_engine() -> str:
    """The engine a server starting now uses: ``MLY_HTTP2_ENGINE`` if set, else the fastest one built."""
    wanted = os.environ.get(ENGINE_ENV, "").strip().lower()
    if wanted and wanted not in ENGINES:
        raise ConfigError(ENGINE_ENV, f"must be one of {', '.join(ENGINES)}, got {wanted!r}")
    if wanted == "h2":
        if h2_available() or not native_available():
            return "h2"
        log.warning("%s=h2 but the h2 package is not installed (pip install 'mly[http2]'): HTTP/2 is served "
                    "by the nghttp2 engine", ENGINE_ENV)
        return "nghttp2"
    if native_available():
        return "nghttp2"
    if wanted == "nghttp2":
        log.warning("%s=nghttp2 but mly was built without libnghttp2 (apt-get install libnghttp2-dev, then "
                    "reinstall mly): HTTP/2 is served by the h2 package", ENGINE_ENV)
    return "h2"


def connection_class(engine: str) -> Any:
    """The ``asyncio.Protocol`` class of ``engine``, imported on the first HTTP/2 connection."""
    if engine == "nghttp2":
        from mly.http.h2native import NativeH2Protocol

        return NativeH2Protocol
    from mly.http.h2 import H2Protocol

    return H2Protocol
