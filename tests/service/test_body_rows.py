"""Rows read straight from a body's bytes (``KeySchema.rows_of_body``) are the arrays the common
path feeds for those rows: ``parse_body`` then ``encode_columns``, indexed. The reader never
encodes a value differently, never encodes a body ``keys_of_body`` leaves alone, and leaves to
the common path any body whose encoding that path refuses, so its error is the common path's.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service.test_body_keys import DTYPES, INPUTS, MAX_ROWS, SCHEMA, anything, plain_batches, unusual_body, values

from mly.common.dictionary import Dictionary, Layer
from mly.common.keys import KeySchema
from mly.common.request import encode_columns, encoders_for, parse_body
from mly.config.schema import InputField
from mly.errors import InputError, MlyError

ENCODERS = encoders_for([f.name for f in INPUTS], DTYPES, {f.name: f.precision for f in INPUTS})
PRECISIONS = tuple(precision for _name, _code, precision in ENCODERS)  # ENCODERS are in slot order


def common_path_rows(body: bytes, rows: list[int]) -> list[np.ndarray] | None:
    """What the common path feeds for ``rows`` of ``body``, slot by slot; ``None`` if it refuses it."""
    try:
        columns = encode_columns(parse_body(body, max_batch_size=MAX_ROWS), DTYPES, ENCODERS)
    except MlyError:
        return None
    index = np.asarray(rows, dtype=np.intp)
    return [columns[f.name][index] for f in INPUTS]


def same(native: list[np.ndarray], expected: list[np.ndarray]) -> bool:
    """Equal dtypes and values, floats to the bit (``-0.0`` is not ``0.0``)."""
    return len(native) == len(expected) and all(
        a.dtype == b.dtype and a.shape == b.shape and (a.tolist() == b.tolist() if a.dtype == object
                                                       else a.tobytes() == b.tobytes())
        for a, b in zip(native, expected))


@settings(max_examples=300, deadline=None)
@given(plain_batches(), st.randoms())
def test_rows_of_a_plain_batch_are_encoded_as_the_common_path_encodes_them(
        batch: tuple[int, dict[str, Any]], rnd: Any) -> None:
    n, columns = batch
    body = orjson.dumps({"batch_size": n, **columns})
    rows = sorted(rnd.sample(range(n), rnd.randrange(n + 1)))
    native = SCHEMA.rows_of_body(body, rows, PRECISIONS, MAX_ROWS)
    expected = common_path_rows(body, rows)
    if expected is None:  # a float64 too large to round: the common path's error, not the reader's
        assert native is None, body
        return
    assert native is not None and same(native, expected), (body, rows)
    spaced = json.dumps({"batch_size": n, **columns}, indent=rnd.choice([None, 1, "\t"])).encode()
    assert same(SCHEMA.rows_of_body(spaced, rows, PRECISIONS, MAX_ROWS) or [], expected)


@settings(max_examples=300, deadline=None)
@given(plain_batches(), st.sampled_from([*values, "batch_size", "cache_key", "extra"]), anything,
       st.sampled_from(["replace", "drop", "inner"]))
def test_an_unusual_body_is_encoded_the_same_or_left_to_the_common_path(
        batch: tuple[int, dict[str, Any]], name: str, value: Any, how: str) -> None:
    n, _columns = batch
    raw = unusual_body(*batch, name, value, how)
    native = SCHEMA.rows_of_body(raw, list(range(n)), PRECISIONS, MAX_ROWS)
    if native is not None:
        assert SCHEMA.keys_of_body(raw, MAX_ROWS) is not None, raw
        expected = common_path_rows(raw, list(range(n)))
        assert expected is not None and same(native, expected), raw


@pytest.mark.parametrize("row", [0, 2])
def test_a_value_the_encoder_refuses_in_any_row_leaves_the_body_to_the_common_path(row: int) -> None:
    """A keyable float64 too large to round to its 3 decimals: the common path's 400 names its
    row even when only other rows are asked for (they would be, on a batch whose row hit)."""
    f64 = [0.5, 1.5, 2.5]
    f64[row] = 1e307
    body = orjson.dumps({"batch_size": 3, "s": ["a"], "i": [1], "f32": [1.5], "f64": f64, "w": ["x"], "i32": [3],
                         "b": [True], "aux": ["n"], "wf": [0.1]})
    assert SCHEMA.keys_of_body(body, MAX_ROWS) is not None
    assert SCHEMA.rows_of_body(body, [1], PRECISIONS, MAX_ROWS) is None
    with pytest.raises(InputError, match=rf"^f64\[{row}\]: "):
        encode_columns(parse_body(body), DTYPES, ENCODERS)


def test_rows_outside_the_batch_are_refused() -> None:
    body = orjson.dumps({"batch_size": 2, "s": ["a", "b/c"], "i": [1], "f32": [1.5], "f64": [0.5], "w": ["x"],
                         "i32": [3], "b": [True], "aux": ["n"], "wf": [0.1]})
    assert SCHEMA.rows_of_body(body, [], PRECISIONS, MAX_ROWS) is not None
    with pytest.raises(IndexError):
        SCHEMA.rows_of_body(body, [2], PRECISIONS, MAX_ROWS)


#: Slot kinds ``INPUTS`` lacks: a float32 wildcard (keyed as float32), a float64 wildcard that is
#: also rounded (keyed exactly, fed rounded), an int32 vocabulary, an unkeyed float32, an int64
#: wildcard, a float32 with 6 decimals.
OTHER_INPUTS = (
    InputField("wf32", 0, "float", wildcard=True), InputField("v32", 1, "int32"), InputField("f32", 2, "float"),
    InputField("w64", 3, "int64", wildcard=True), InputField("wp", 4, "float64", wildcard=True, precision=2),
    InputField("p6", 5, "float", precision=6),
)
OTHER_DTYPES = {"wf32": "float32", "v32": "int32", "f32": "float32", "w64": "int64", "wp": "float64", "p6": "float32"}
OTHER = KeySchema(OTHER_INPUTS, Dictionary.build([Layer.of_ints("v32", [1, 7, -5])]))
OTHER_ENCODERS = encoders_for(list(OTHER_DTYPES), OTHER_DTYPES, {f.name: f.precision for f in OTHER_INPUTS})
_any_float = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(-1e4, 1e4, width=32),
                       st.sampled_from([3.4028235e38, 3.4028236e38, 1.4e-45, 0.0049999, 0.005, -0.0]))
OTHER_VALUES = {"wf32": _any_float, "v32": st.one_of(st.sampled_from([1, 7, -5]), st.integers(-(2**31), 2**31 - 1)),
                "f32": _any_float, "w64": st.integers(-(2**63), 2**63 - 1), "wp": _any_float, "p6": _any_float}


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5).flatmap(lambda n: st.tuples(st.just(n), st.fixed_dictionaries(
    {name: st.lists(v, min_size=n, max_size=n) | st.lists(v, min_size=1, max_size=1)
     for name, v in OTHER_VALUES.items()}))), st.randoms())
def test_other_slot_kinds_are_keyed_and_encoded_as_the_common_path_does(
        batch: tuple[int, dict[str, Any]], rnd: Any) -> None:
    n, columns = batch
    raw = orjson.dumps({"batch_size": n, **columns})
    rows = sorted(rnd.sample(range(n), rnd.randrange(n + 1)))
    keys = OTHER.keys_of_body(raw, MAX_ROWS)
    native = OTHER.rows_of_body(raw, rows, tuple(p for _n, _c, p in OTHER_ENCODERS), MAX_ROWS)
    request = parse_body(raw, max_batch_size=MAX_ROWS)
    try:
        encoded = encode_columns(request, OTHER_DTYPES, OTHER_ENCODERS)
    except InputError:  # past float32, too large to round: the common path's error
        assert native is None, raw
        return
    expected = OTHER.keys_if_plain(request.values, n)
    assert keys == (None if expected is None else (expected, True)), raw
    if keys is not None:
        assert native is not None and same(native, [encoded[f.name][np.asarray(rows, dtype=np.intp)]
                                                    for f in OTHER_INPUTS]), (raw, rows)
