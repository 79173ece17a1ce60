from __future__ import annotations

import dict_hash_ref as ref
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


def test_fnv1_matches_go() -> None:
    # Worked examples computed with Go's hash/fnv.New64 (FNV-1).
    assert fnv.fnv1_64(b"abc") - 2**64 == -2820157060406071861
    assert fnv.fnv1_64(b"[UNK]abc") - 2**64 == -8094315438253665041
    assert fnv.fnv1_64(b"") == OFFSET


@settings(max_examples=200, deadline=None)
@given(st.text(), st.lists(st.text()))
def test_string_layer_hash_matches_reference(name: str, strings: list[str]) -> None:
    assert fnv.layer_hash_strings(name, strings) == ref.layer_hash_strings(name, strings)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.lists(st.integers(-(2**63), 2**63 - 1)))
def test_int_layer_hash_matches_reference(name: str, ints: list[int]) -> None:
    assert fnv.layer_hash_ints(name, np.asarray(ints, dtype=np.int64)) == ref.layer_hash_ints(name, ints)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1)))
def test_dictionary_hash_matches_reference(hashes: list[int]) -> None:
    assert fnv.combine_layer_hashes(np.asarray(hashes, dtype=np.int64)) == ref.dictionary_hash(hashes)


def test_string_boundaries_change_the_layer_hash() -> None:
    """Go joins the strings bare: ``["ab","c"]`` and ``["a","bc"]`` hashed the same."""
    assert fnv.layer_hash_strings("sa", ["ab", "c"]) != fnv.layer_hash_strings("sa", ["a", "bc"])
    assert fnv.layer_hash_strings("sa", ["", "a"]) != fnv.layer_hash_strings("sa", ["a"])


def test_name_and_kind_are_part_of_the_layer_hash() -> None:
    assert fnv.layer_hash_strings("sa", ["a"]) != fnv.layer_hash_strings("sl", ["a"])
    assert fnv.layer_hash_strings("sa", []) != fnv.layer_hash_ints("sa", np.array([], dtype=np.int64))
