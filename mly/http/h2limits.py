"""HTTP/2 limits and the connection preface, without importing ``h2``.

The connection protocol needs them on every connection; the ``h2`` package
(the ``http2`` extra) is imported only when a connection turns out to be HTTP/2.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["PREFACE", "H2Settings", "h2_available", "hard_header_limit"]

#: The client connection preface (RFC 9113 §3.4) that starts every HTTP/2 connection.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


#: The least decoded size of one header block that ends the connection (``hard_header_limit``).
_HARD_HEADER_FLOOR = 1 << 20


def hard_header_limit(max_header_list_size: int) -> int:
    """The decoded size of one header block past which both engines end the connection
    (GOAWAY ENHANCE_YOUR_CALM, RFC 9113 §10.5) instead of decoding on to answer 431: an HPACK
    bomb (a few KB referring to one big table entry again and again) costs decoding time far
    beyond its size, and no client sends that much by mistake."""
    return max(_HARD_HEADER_FLOOR, 4 * max_header_list_size)


def h2_available() -> bool:
    """Whether the ``h2`` package is installed (``pip install 'mly[http2]'``)."""
    return importlib.util.find_spec("h2") is not None


@dataclass(frozen=True, slots=True)
class H2Settings:
    """The HTTP/2 limits of one server (from ``Endpoint``); defaults follow Go's server."""

    enabled: bool = True
    max_concurrent_streams: int = 250
    stream_window: int = 1 << 20
    connection_window: int = 1 << 20
    idle_timeout: float = 5.0
    write_timeout: float = 5.0
    #: Seconds a stream may wait for the next line of its request body (``ReadTimeoutMs``); 0 = no limit.
    read_timeout: float = 5.0
    max_header_list_size: int = 8192 + 2048
