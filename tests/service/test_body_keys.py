"""Keys read straight from a body's bytes (``KeySchema.keys_of_body``) are the keys the common
path builds after parsing it, or ``None``: the native reader never keys a body differently,
never accepts a body the common path refuses, and does not give up on the plain bodies it
exists for. The reference is the common path itself: ``parse_body`` and the plain-value keys.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from mly.common.dictionary import Dictionary, Layer
from mly.common.keys import KeySchema
from mly.common.request import has_exact_names, parse_body
from mly.config.schema import InputField
from mly.errors import MlyError

INPUTS = (
    InputField("s", 0, "string"),
    InputField("i", 1, "int64"),
    InputField("f32", 2, "float", precision=2),
    InputField("f64", 3, "float64", precision=3),
    InputField("w", 4, "string", wildcard=True),
    InputField("i32", 5, "int32", wildcard=True),
    InputField("b", 6, "bool", wildcard=True),
    InputField("aux", 7, "string", auxiliary=True),
    InputField("wf", 8, "float64", wildcard=True),  # its key shows a float to the last bit
)
DTYPES = {"s": "string", "i": "int64", "f32": "float32", "f64": "float64", "w": "string", "i32": "int32",
          "b": "bool", "aux": "string", "wf": "float64"}
SCHEMA = KeySchema(INPUTS, Dictionary.build([Layer.of_strings("s", ["a", "b/c", "ü"]), Layer.of_ints("i", [1, 7])]))
MAX_ROWS = 64


def common_path_keys(body: bytes) -> tuple[list[str], bool] | None:
    """The keys today's path builds for ``body`` without encoding it, or ``None`` (it refuses the
    body, or keys it only after encoding)."""
    try:
        request = parse_body(body, max_batch_size=MAX_ROWS)
    except MlyError:
        return None
    if not has_exact_names(request.values, DTYPES):
        return None
    if request.batch:
        keys = SCHEMA.keys_if_plain(request.values, request.rows)
        return None if keys is None else (keys, True)
    key = SCHEMA.key_if_plain(request.values)
    return None if key is None else ([key], False)


def check(body: bytes, *, plain: bool = False) -> tuple[list[str], bool] | None:
    native = SCHEMA.keys_of_body(body, MAX_ROWS)
    expected = common_path_keys(body)
    if native is not None:
        assert native == expected, body
    if plain:
        assert native is not None and native == expected, body
    return native


ascii_texts = st.text(alphabet=st.sampled_from(["a", "b", "/", "c", "[", "]", " ", "x"]), max_size=5)
texts = st.one_of(ascii_texts, st.text(max_size=4))  # escapes, quotes, non-ASCII: the common path's
floats = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False)
values: dict[str, Any] = {
    "s": st.one_of(st.sampled_from(["a", "b/c", "zz"]), ascii_texts),
    "i": st.one_of(st.sampled_from([1, 7, 0, -3]), st.integers(-(2**63), 2**63 - 1)),
    "f32": floats, "f64": st.one_of(floats, st.floats(allow_nan=False, allow_infinity=False)),
    "w": ascii_texts, "i32": st.integers(-(2**31), 2**31 - 1), "b": st.booleans(), "aux": ascii_texts,
    "wf": st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                    st.integers(-(10**17), 10**17).map(lambda n: n / 1000), st.integers(-999, 999).map(lambda n: n * 1e-20)),
}
anything = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(), texts,
                     st.lists(st.integers(), max_size=2), st.dictionaries(st.just("k"), st.integers(), max_size=1))


@st.composite
def plain_batches(draw: Any) -> tuple[int, dict[str, Any]]:
    n = draw(st.integers(1, 6))
    columns = {name: draw(st.one_of(st.lists(v, min_size=n, max_size=n), st.lists(v, min_size=1, max_size=1)))
               for name, v in values.items()}
    return n, columns


@settings(max_examples=300, deadline=None)
@given(plain_batches(), st.randoms())
def test_a_plain_batch_is_keyed_from_its_bytes_as_after_parsing(batch: tuple[int, dict[str, Any]], rnd: Any) -> None:
    n, columns = batch
    names = list(columns)
    rnd.shuffle(names)  # any order of names, batch_size anywhere
    at = rnd.randrange(len(names) + 1)
    items = [(name, columns[name]) for name in names]
    items.insert(at, ("batch_size", n))
    body = dict(items)
    native = check(orjson.dumps(body), plain=True)
    assert native is not None and len(native[0]) == n and native[1] is True
    check(json.dumps(body, indent=rnd.choice([None, 1, "\t"])).encode(), plain=True)  # JSON whitespace


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries(values))
def test_a_plain_row_is_keyed_from_its_bytes_as_after_parsing(row: dict[str, Any]) -> None:
    del row["i32"]  # an int32 row always takes the encoding path (``key_if_plain``)
    only_int64 = KeySchema(tuple(f for f in INPUTS if f.name != "i32"),
                           Dictionary.build([Layer.of_strings("s", ["a", "b/c", "ü"]), Layer.of_ints("i", [1, 7])]))
    native = only_int64.keys_of_body(orjson.dumps(row), MAX_ROWS)
    assert native == ([only_int64.key_if_plain(row)], False)
    assert SCHEMA.keys_of_body(orjson.dumps({**row, "i32": 5}), MAX_ROWS) is None


def unusual_body(n: int, columns: dict[str, Any], name: str, value: Any, how: str) -> bytes:
    """A plain batch body with ``name`` replaced by ``value``, dropped, its first item replaced
    (``inner``) or sent twice (``duplicate``); json, so integers past 64 bits are written too."""
    body: dict[str, Any] = {"batch_size": n, **columns}
    if how == "replace":
        body[name] = value
    elif how == "drop":
        body.pop(name, None)
    elif how == "inner" and isinstance(body.get(name), list):
        body[name] = [value, *body[name][1:]]

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    raw = dumps(body)
    if how == "duplicate":
        raw = raw[:-1] + b',"' + name.encode() + b'":' + dumps(value) + b"}"
    return raw


@settings(max_examples=500, deadline=None)
@given(plain_batches(), st.sampled_from(list(values) + ["batch_size", "cache_key", "extra"]), anything,
       st.sampled_from(["replace", "drop", "inner", "duplicate"]))
def test_an_unusual_body_is_keyed_the_same_or_left_to_the_common_path(
        batch: tuple[int, dict[str, Any]], name: str, value: Any, how: str) -> None:
    check(unusual_body(*batch, name, value, how))


def test_bytes_the_common_path_refuses_are_never_keyed() -> None:
    good = {"batch_size": 2, "s": ["a", "zz"], "i": [1, 2], "f32": [1.5, 2.25], "f64": [0.5], "w": ["x", "y"],
            "i32": [3, 4], "b": [True, False], "aux": ["n", "m"], "wf": [0.1, -2.5e-7]}
    raw = orjson.dumps(good)
    assert check(raw, plain=True) is not None
    cases = [
        b"", b"   ", b"[]", b"null", raw + b"x", raw[:-1], raw.replace(b'"a"', b'"\\u0061"'),
        raw.replace(b"1.5", b"01.5"), raw.replace(b"1.5", b"1."), raw.replace(b"1.5", b".5"),
        raw.replace(b"1.5", b"1e999"), raw.replace(b"1.5", b"NaN"), raw.replace(b"[1,2]", b"[1,2,]"),
        raw.replace(b"[1,2]", b"[1 2]"), raw.replace(b"[1,2]", b"[]"), raw.replace(b"[1,2]", b"[1,[2]]"),
        raw.replace(b'"batch_size":2', b'"batch_size":2.0'), raw.replace(b'"batch_size":2', b'"batch_size":0'),
        raw.replace(b'"batch_size":2', b'"batch_size":3'), raw.replace(b'"batch_size":2', b'"batch_size":-2'),
        raw.replace(b'"batch_size":2', b'"batch_size":99999'), raw.replace(b"[3,4]", b"[3,2147483648]"),
        raw.replace(b"[1,2]", b"[1,9223372036854775808]"), raw.replace(b"true", b"1"),
        raw.replace(b'"zz"', b'"z\x01"'), raw.replace(b'"zz"', "\"ü\"".encode()), raw.replace(b'"zz"', b'"\xff"'),
        raw.replace(b'{"batch_size":2,', b'{"batch_size":2,"cache_key":"k",'),
        raw.replace(b'{"batch_size":2,', b'{"batch_size":2,"s":["a","b"],'),
        raw.replace(b'"b":[true,false]', b'"b":true'), raw.replace(b'"b":[true,false]', b'"b":[true,null]'),
        b"\xef\xbb\xbf" + raw,
    ]
    for body in cases:
        assert check(body) is None, body


#: JSON tokens at the edges of what the native reader takes, spliced into a plain body's bytes.
EDGE_TOKENS = [b"-0", b"-0.0", b"1e400", b"1E5", b"1e-400", b"0.125", b"9223372036854775807", b"9223372036854775808",
               b"-9223372036854775809", b"2147483648", b"true", b"null", b'"\\u0000"', b'"\\/"', b'"\\ud800"',
               b'"b/c"', b"[", b"]", b",", b" ", b"\t", b"{", b"}", b":", b"1.0", b"0", b"4.5e-324", b"3.4028236e38",
               b"1e22", b"1e23", b"123456789012345678", b"0.30000000000000004", b'"batch_size"', b'"s"', b"00",
               b"-", b"1e", b".5", b"\xef\xbb\xbf", "\"ü\"".encode()]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(EDGE_TOKENS), st.booleans()), min_size=1,
                max_size=3))
def test_edge_tokens_spliced_into_a_body_are_keyed_the_same_or_left_to_the_common_path(
        splices: list[tuple[int, bytes, bool]]) -> None:
    raw = bytearray(orjson.dumps({"batch_size": 2, "s": ["a", "zz"], "i": [1, 2], "f32": [1.5, 2.25], "f64": [0.5],
                                  "w": ["x", "y"], "i32": [3, 4], "b": [True, False], "aux": ["n", "m"],
                                  "wf": [0.1, -2.5e-7]}))
    for at, token, replace in splices:
        at %= len(raw) + 1
        end = at
        while replace and end < len(raw) and raw[end] not in b",]}":  # the value (or its rest) there
            end += 1
        raw[at:end] = token
    check(bytes(raw))
