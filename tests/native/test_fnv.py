from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mly._native import fnv

OFFSET = 14695981039346656037
PRIME = 1099511628211
MASK = (1 << 64) - 1


def fnv1a_64_ref(data: bytes) -> int:
    h = OFFSET
    for b in data:
        h = ((h ^ b) * PRIME) & MASK
    return h


def test_key_hash_known_vectors() -> None:
    # Published FNV-1a 64 test vectors (isthe.com/chongo/tech/comp/fnv).
    assert fnv.key_hash("") == 0xCBF29CE484222325
    assert fnv.key_hash("a") == 0xAF63DC4C8601EC8C
    assert fnv.key_hash("foobar") == 0x85944171F73967E8


def test_key_hash_is_unsigned_and_differs_from_fnv1() -> None:
    assert fnv.key_hash("foobar") > 2**63
    assert fnv.key_hash("foobar") != fnv.fnv1_64(b"foobar")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_key_hash_matches_python_fnv1a(key: str) -> None:
    assert fnv.key_hash(key) == fnv1a_64_ref(key.encode("utf-8"))


def test_key_hash_lone_surrogate_uses_surrogatepass() -> None:
    assert fnv.key_hash("a\ud800") == fnv1a_64_ref("a\ud800".encode("utf-8", "surrogatepass"))


def test_existing_hashes_unchanged() -> None:
    # Worked examples computed with the Go implementation (FNV-1).
    assert fnv.fnv1_64_strings(["a", "b", "c"]) == -2820157060406071861
    assert fnv.fnv1_64_strings(["[UNK]", "a", "b", "c"]) == -8094315438253665041
    assert fnv.fnv1_64(b"") == OFFSET
    assert fnv.fnv1_64_ints(np.array([], dtype=np.int64)) == OFFSET - 2**64
