"""Pure-Python dictionary hashes, to check ``mly._native.fnv`` against (tests only)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

OFFSET = 14695981039346656037
PRIME = 1099511628211
MASK = (1 << 64) - 1


def fnv1_64(data: bytes, h: int = OFFSET) -> int:
    for b in data:
        h = ((h * PRIME) & MASK) ^ b
    return h


def signed(h: int) -> int:
    return h - (1 << 64) if h >= 1 << 63 else h


def u64(v: int) -> bytes:
    return struct.pack("<Q", v & MASK)


def framed(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return u64(len(raw)) + raw


def layer_hash_strings(name: str, strings: Sequence[str]) -> int:
    data = b"s" + framed(name) + u64(len(strings)) + b"".join(framed(s) for s in strings)
    return signed(fnv1_64(data))


def layer_hash_ints(name: str, ints: Sequence[int]) -> int:
    data = b"i" + framed(name) + u64(len(ints)) + b"".join(u64(v) for v in ints)
    return signed(fnv1_64(data))


def dictionary_hash(layer_hashes: Sequence[int]) -> int:
    return signed(fnv1_64(u64(len(layer_hashes)) + b"".join(u64(h) for h in layer_hashes)))
