"""``redis_wire`` against plain-Python references: the entry layout and RESP commands."""

from __future__ import annotations

import struct

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mly._native import redis_wire

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
KEYS = st.lists(st.one_of(st.text(min_size=0, max_size=40), st.binary(max_size=40)), max_size=40)


def entry_ref(row_json: bytes, dict_hash: int, expires_at_ms: int) -> bytes:
    return b"\x01" + struct.pack("<qq", dict_hash, expires_at_ms) + row_json


def unpack_ref(values: list[object], dict_hash: int, now_ms: int, min_expires_ms: int
               ) -> tuple[list[bytes | None], list[int], int, int]:
    rows: list[bytes | None] = []
    remaining: list[int] = []
    stale = foreign = 0
    for value in values:
        row, left = None, 0
        if value is not None:
            if type(value) is not bytes or len(value) <= 17 or value[0] != 1:
                foreign += 1
            else:
                stored_hash, expires = struct.unpack_from("<qq", value, 1)
                if stored_hash != dict_hash or expires < min_expires_ms:
                    stale += 1
                elif expires > now_ms:
                    row, left = value[17:], expires - now_ms
        rows.append(row)
        remaining.append(left)
    return rows, remaining, stale, foreign


def command_ref(command: bytes, prefix: bytes, keys: list[str | bytes], each: bool) -> list[list[bytes]]:
    full = [prefix + (key.encode() if isinstance(key, str) else key) for key in keys]
    return [[command, key] for key in full] if each else [[command, *full]]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200), INT64, INT64)
def test_pack_entry_is_the_layout(row_json: bytes, dict_hash: int, expires: int) -> None:
    packed = redis_wire.pack_entry(row_json, dict_hash, expires)
    assert packed == entry_ref(row_json, dict_hash, expires)
    assert redis_wire.entry_header(packed) == (dict_hash, expires)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.none(),
    st.binary(max_size=30),
    st.builds(lambda row, h, e: entry_ref(row, h, e), st.binary(min_size=1, max_size=30),
              st.sampled_from([7, -7, 0]), st.integers(min_value=0, max_value=3000)),
    st.integers(),
), max_size=40), st.sampled_from([7, -7]), st.integers(min_value=0, max_value=3000),
    st.sampled_from([0, 1000, 2500]))
def test_unpack_entries_matches_reference(values: list[object], dict_hash: int, now_ms: int, min_expires: int) -> None:
    assert redis_wire.unpack_entries(values, dict_hash, now_ms, min_expires) == unpack_ref(
        values, dict_hash, now_ms, min_expires)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"MGET", b"GET", b"X" * 12]), st.binary(max_size=20), KEYS, st.booleans())
def test_pack_key_command_is_resp(command: bytes, prefix: bytes, keys: list[str | bytes], each: bool) -> None:
    packed = redis_wire.pack_key_command(command, prefix, keys, each)
    # Parsed back by hiredis as a server would read it (a request is an array of bulk strings).
    reader = hiredis.Reader()
    reader.feed(packed)
    commands = []
    while (reply := reader.gets()) is not False:
        commands.append(reply)
    assert commands == command_ref(command, prefix, keys, each)


def test_pack_key_command_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        redis_wire.pack_key_command(b"MGET", b"", ["a", 3])  # type: ignore[list-item]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12), st.lists(st.one_of(st.text(alphabet="ab{}c", max_size=12), st.binary(max_size=12)),
                                        max_size=20))
def test_key_slots_are_redis_clusters(prefix: bytes, keys: list[str | bytes]) -> None:
    from redis.crc import key_slot  # redis-py's implementation of the cluster spec

    full = [prefix + (key.encode() if isinstance(key, str) else key) for key in keys]
    assert redis_wire.key_slots(prefix, keys) == [key_slot(key) for key in full]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="ab{}c", max_size=8), min_size=1, max_size=30), st.booleans())
def test_split_by_owner_groups_every_key_once(keys: list[str], script: bool) -> None:
    from array import array

    from redis.crc import key_slot

    owners = array("H", [slot % 3 for slot in range(16384)])
    owners[key_slot(b"p:" + keys[0].encode())] = 65535  # a slot nobody serves
    groups = redis_wire.split_by_owner(b"GET", b"p:", keys, memoryview(owners), b"S" if script else None)
    assert sorted(i for _, _, group in groups for i in group) == list(range(len(keys)))
    for owner, packed, group in groups:
        assert all(owners[key_slot(b"p:" + keys[i].encode())] == owner for i in group)
        reader = hiredis.Reader()
        reader.feed(packed)
        commands = []
        while (reply := reader.gets()) is not False:
            commands.append(reply)
        wanted = [b"p:" + keys[i].encode() for i in group]
        if script and len(group) > 1:
            assert commands == [[b"EVAL", b"S", b"0", *wanted]]
        else:
            assert commands == [[b"GET", key] for key in wanted]
