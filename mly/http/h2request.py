"""The checks RFC 9113 §8.2-8.3 asks of an HTTP/2 request head, in the one pass over its
fields that builds the ASGI headers anyway (``h2``'s own checks are off: see ``h2conn``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import chain
from typing import NamedTuple

__all__ = ["HOP_BY_HOP", "RequestHead", "header_list_size", "parse_request", "trailers_problem"]

#: Connection-specific fields that HTTP/2 forbids (RFC 9113 §8.2.2); dropped from app responses.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
#: The request pseudo-header fields (RFC 9113 §8.3.1); anything else starting with ``:`` is malformed.
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority"})
_FORBIDDEN = re.compile(rb"[\0\r\n]")
#: What each field adds to the size a peer is held to (RFC 9113 §6.5.2: SETTINGS_MAX_HEADER_LIST_SIZE).
_FIELD_OVERHEAD = 32


class RequestHead(NamedTuple):
    """What the server keeps of a well-formed request head."""

    method: bytes
    path: bytes
    headers: list[tuple[bytes, bytes]]
    #: The ``content-length`` value, if any (digits only).
    content_length: bytes | None


def parse_request(fields: Iterable[tuple[bytes, bytes]]) -> RequestHead | str:
    """The request head, or why it is malformed (a stream error, RFC 9113 §8.1.1)."""
    method = path = scheme = b""
    authority = content_length = None
    headers: list[tuple[bytes, bytes]] = []
    has_host = False
    problem = ""
    fields = list(fields)
    for name, value in fields:
        if name[:1] == b":":
            if headers or name not in _REQUEST_PSEUDO:
                problem = f"pseudo-header {name!r} misplaced or unknown"
            elif name == b":method":
                problem = problem or ("repeated :method" if method else "")
                method = value
            elif name == b":path":
                problem = problem or ("repeated :path" if path else "")
                path = value
            elif name == b":scheme":
                problem = problem or ("repeated :scheme" if scheme else "")
                scheme = value
            else:
                problem = problem or ("repeated :authority" if authority is not None else "")
                authority = value
        else:
            if name in HOP_BY_HOP or (name == b"te" and value != b"trailers"):
                problem = f"connection-specific field {name!r}"
            elif name != name.lower():
                problem = f"upper-case field name {name!r}"
            elif name == b"content-length":
                if not value.isdigit() or (content_length is not None and value != content_length):
                    problem = "content-length not one number"
                content_length = value
            has_host = has_host or name == b"host"
            headers.append((name, value))
    if _FORBIDDEN.search(b"".join(chain.from_iterable(fields))):
        problem = problem or "NUL, CR or LF in a field"
    if not problem and (not method or not scheme or (path[:1] != b"/" and path != b"*")):
        problem = "missing or invalid :method, :scheme or :path"
    if problem:
        return problem
    if authority is not None and not has_host:
        headers.insert(0, (b"host", authority))
    return RequestHead(method, path, headers, content_length)


def header_list_size(fields: Iterable[tuple[bytes, bytes]]) -> int:
    """The size SETTINGS_MAX_HEADER_LIST_SIZE limits: names and values plus 32 bytes a field."""
    return sum(len(name) + len(value) + _FIELD_OVERHEAD for name, value in fields)


def trailers_problem(fields: Iterable[tuple[bytes, bytes]]) -> str:
    """Why a trailer section is malformed, or ``""``: pseudo-headers are for heads only (RFC 9113 §8.1)."""
    for name, _ in fields:
        if name[:1] == b":":
            return f"pseudo-header {name!r} in trailers"
    return ""
