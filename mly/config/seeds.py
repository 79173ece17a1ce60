"""``Connections[].Hostnames``: comma-separated seeds, each with or without its own port.

A cluster's nodes need not share one port (several nodes on one host never do), so
an entry may name its port: ``host:port``, ``[v6]:port``. Entries without one use the
connection's ``Port``; a bare IPv6 address (``::1``) has no port. Go appends ``Port``
to every entry, so it cannot list such seeds.
"""

from __future__ import annotations

__all__ = ["parse_seeds"]


def _port(text: str, entry: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= 65535:
        raise ValueError(f"{entry!r}: port must be 1..65535, got {text!r}")
    return int(text)


def parse_seeds(hostnames: str, default_port: int) -> list[tuple[str, int]]:
    """``[(host, port), ...]`` in the given order; ``ValueError`` naming a malformed entry."""
    seeds: list[tuple[str, int]] = []
    for raw in hostnames.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if "/" in entry or any(c.isspace() for c in entry):
            raise ValueError(f"{entry!r}: expected host, host:port or [v6]:port (no scheme, path or spaces)")
        if entry.startswith("["):
            host, sep, rest = entry[1:].partition("]")
            if not sep or not host:
                raise ValueError(f"{entry!r}: an IPv6 address in brackets needs its closing ']'")
            if rest and not rest.startswith(":"):
                raise ValueError(f"{entry!r}: expected ']:port' after the address")
            seeds.append((host, _port(rest[1:], entry) if rest else default_port))
        elif entry.count(":") == 1:
            host, _, port = entry.partition(":")
            if not host:
                raise ValueError(f"{entry!r}: the host is missing")
            seeds.append((host, _port(port, entry)))
        else:
            seeds.append((entry, default_port))  # a name, an IPv4 address or a bare IPv6 address
    return seeds
