"""Request values -> typed columns: native == reference, and the errors a caller sees."""

from __future__ import annotations

import math
from typing import Any

import encode_ref
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mly._native import encode
from mly.errors import InputError, RequestError

S, I64, I32, F32, F64, B = 0, 1, 2, 3, 4, 5
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@pytest.fixture(params=["native", "reference"])
def encode_column(request: pytest.FixtureRequest) -> Any:
    return encode.encode_column if request.param == "native" else encode_ref.encode_column


def test_dtype_constants() -> None:
    assert (encode.DT_STRING, encode.DT_INT64, encode.DT_INT32) == (0, 1, 2)
    assert (encode.DT_FLOAT32, encode.DT_FLOAT64, encode.DT_BOOL) == (3, 4, 5)


def test_single_mode_returns_length_one(encode_column: Any) -> None:
    out = encode_column("s", S, "abc", 1, False)
    assert out.dtype == object and out.tolist() == ["abc"]
    assert encode_column("i", I64, -5, 1, False).dtype == np.int64
    assert encode_column("i", I32, 7, 1, False).dtype == np.int32
    assert encode_column("f", F32, 1, 1, False).tolist() == [1.0]
    assert encode_column("f", F64, 0.1, 1, False).tolist() == [0.1]
    assert encode_column("b", B, True, 1, False).tolist() == [True]


def test_batch_and_broadcast(encode_column: Any) -> None:
    out = encode_column("s", S, ["a", "b", "c"], 3, True)
    assert out.tolist() == ["a", "b", "c"]
    out = encode_column("s", S, ["x"], 4, True)
    assert out.shape == (4,) and out.tolist() == ["x"] * 4
    out = encode_column("f", F32, [1.5], 3, True)
    assert out.dtype == np.float32 and out.tolist() == [1.5] * 3
    assert encode_column("i", I64, (1, 2), 2, True).tolist() == [1, 2]


def test_precision_rounds_floats_only(encode_column: Any) -> None:
    out = encode_column("f", F32, [1.00054, 1.00053, 1.20001], 3, True, 4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([1.0005, 1.0005, 1.2], dtype=np.float32))
    assert encode_column("d", F64, 0.125, 1, False, 2).tolist() == [0.13]
    assert encode_column("i", I64, [12345], 1, True, 2).tolist() == [12345]


def test_values_at_the_edges(encode_column: Any) -> None:
    assert encode_column("i", I64, [INT64_MIN, INT64_MAX], 2, True).tolist() == [INT64_MIN, INT64_MAX]
    assert encode_column("i", I32, [-(2**31), 2**31 - 1], 2, True).tolist() == [-(2**31), 2**31 - 1]
    out = encode_column("f", F32, [3.4028234663852886e38, -3.4028234663852886e38, 2**64], 3, True)
    assert out.tolist() == [float(np.finfo(np.float32).max), -float(np.finfo(np.float32).max), float(np.float32(2**64))]
    assert encode_column("f", F64, [1e300], 1, True).tolist() == [1e300]
    assert encode_column("s", S, ["", "/", "é😀"], 3, True).tolist() == ["", "/", "é😀"]


def test_numpy_scalars_are_accepted(encode_column: Any) -> None:
    assert encode_column("i", I64, [np.int32(3), np.uint8(4)], 2, True).tolist() == [3, 4]
    assert encode_column("f", F64, [np.float32(0.5), np.int64(2)], 2, True).tolist() == [0.5, 2.0]
    assert encode_column("b", B, [np.bool_(True)], 1, True).tolist() == [True]
    assert encode_column("s", S, [np.str_("a")], 1, True).tolist() == ["a"]


ERRORS = [
    (("s", S, ["a", 1], 2, True), "s[1]: expected string, got int 1", 1),
    (("s", S, None, 1, False), "s: expected string, got null", None),
    (("s", S, ["a"], 1, False), "s: expected string, got array (arrays need batch_size)", None),
    (("i", I64, [True], 1, True), "i[0]: expected int, got true", 0),
    (("i", I64, [1.0], 1, True), "i[0]: expected int, got float 1.0", 0),
    (("i", I64, ["1"], 1, True), "i[0]: expected int, got string '1'", 0),
    (("i", I64, "nine", 1, False), "i: expected int, got string 'nine'", None),
    (("i", I64, "x" * 50, 1, False), f"i: expected int, got string {'x' * 37 + '...'!r}", None),
    # An integer literal past 64 bits reaches the encoder as a float (orjson): still "out of range".
    (("i", I64, 2.0**64, 1, False), "i: integer out of range for int64", None),
    (("i", I64, -(2.0**70), 1, False), "i: integer out of range for int64", None),
    (("i", I32, [2.0**64], 1, True), "i[0]: integer out of range for int32", 0),
    (("f", F32, [1.0, 1e39], 2, True), "f[1]: out of range for float32, got 1e+39", 1),
    (("f", F32, -(10**39), 1, False), "f: out of range for float32, got -1e+39", None),
    (("f", F32, math.inf, 1, False), "f: must be a finite number, got inf", None),
    (("f", F64, [1.0, math.nan], 2, True), "f[1]: must be a finite number, got nan", 1),
    (("f", F64, -math.inf, 1, False), "f: must be a finite number, got -inf", None),
    (("i", I64, [1, 2**63], 2, True), "i[1]: integer out of range for int64", 1),
    (("i", I64, -(2**63) - 1, 1, False), "i: integer out of range for int64", None),
    (("i", I32, [2**31], 1, True), "i[0]: integer out of range for int32", 0),
    (("f", F32, [False], 1, True), "f[0]: expected float, got false", 0),
    (("f", F64, [None, 1.0], 2, True), "f[0]: expected float, got null", 0),
    (("f", F64, [[1.0]], 1, True), "f[0]: expected float, got array", 0),
    (("f", F64, [{"a": 1}], 1, True), "f[0]: expected float, got object", 0),
    (("f", F64, [10**400], 1, True), "f[0]: integer out of range for float", 0),
    (("d", F64, [1.0, 1e307], 2, True, 2), "d[1]: too large to round to 2 decimals", 1),
    (("d", F64, [1e307, "x"], 2, True, 2), "d[0]: too large to round to 2 decimals", 0),  # first row at fault
    (("f", F32, [1.0, 3e38], 2, True, 300), "f[1]: too large to round to 300 decimals", 1),
    (("b", B, [1], 1, True), "b[0]: expected bool, got int 1", 0),
    (("b", B, ["true"], 1, True), "b[0]: expected bool, got string 'true'", 0),
    (("a", S, "x", 2, True), "a: expected an array of 2 values, got string", None),
    (("a", S, {"x": 1}, 2, True), "a: expected an array of 2 values, got object", None),
    (("a", I64, [], 2, True), "a: expected an array of 2 values, got an empty array", None),
    (("a", I64, [1, 2, 3], 2, True), "a: has 3 values, batch_size is 2 (give 1 value to broadcast, or 2)", None),
    (("a", I64, [1, 2], 1, True), "a: has 2 values, batch_size is 1", None),
]


@pytest.mark.parametrize(("args", "message", "row"), ERRORS)
def test_errors_name_field_and_row(encode_column: Any, args: tuple[Any, ...], message: str, row: int | None) -> None:
    with pytest.raises(InputError) as info:
        encode_column(*args)
    assert str(info.value) == message
    assert info.value.field == args[0]
    assert info.value.row == row
    assert isinstance(info.value, RequestError) and info.value.status == 400


def test_bad_dtype_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        encode.encode_column("x", 9, 1, 1, False)


# --- native == reference ------------------------------------------------------------------

good = {
    S: st.text(max_size=5),
    I64: st.integers(INT64_MIN, INT64_MAX),
    I32: st.integers(-(2**31), 2**31 - 1),
    F32: st.one_of(st.floats(), st.integers(-(2**70), 2**70)),
    F64: st.one_of(st.floats(), st.integers(-(2**70), 2**70)),
    B: st.booleans(),
}
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**70),
    st.floats(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.sampled_from([np.int64(5), np.float32(0.25), np.bool_(False), np.float64(-1.5), 10**400]),
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Any, ...]:
    dtype = draw(st.integers(0, 5))
    n_rows = draw(st.integers(1, 5))
    batch = draw(st.booleans())
    # A third of the cases may hold any JSON-ish value; the rest are well-typed.
    value = st.one_of(good[dtype], anything) if draw(st.integers(0, 2)) == 0 else good[dtype]
    if batch:
        length = draw(st.sampled_from([1, n_rows, n_rows, n_rows, 0, n_rows + 1]))
        values: Any = draw(st.lists(value, min_size=length, max_size=length))
        if draw(st.integers(0, 9)) == 0:
            values = draw(anything)
    else:
        values = draw(value)
    precision = draw(st.sampled_from([0, 0, 1, 3, 6]))
    return ("col", dtype, values, n_rows, batch, precision)


def outcome(fn: Any, args: tuple[Any, ...]) -> Any:
    try:
        out = fn(*args)
    except InputError as exc:
        return ("error", str(exc), exc.row)
    return ("ok", out.dtype, out.shape, [repr(v) for v in out.tolist()])


@settings(max_examples=500, deadline=None)
@given(cases())
def test_encode_matches_reference(args: tuple[Any, ...]) -> None:
    assert outcome(encode.encode_column, args) == outcome(encode_ref.encode_column, args)
