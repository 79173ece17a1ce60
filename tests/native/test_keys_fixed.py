"""Float key text written without ``snprintf`` (``put_fixed_fast``) is ``%.*f``'s, digit for digit.

The fast writer is used only where it can prove its digits; these check it against the
reference (Python's correctly rounded ``%f``, as glibc's and Go's) where it applies and at
the edges where it must hand over: ties, huge values, negative zero, many decimals.
"""

from __future__ import annotations

import keys_ref
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mly._native import keys

FLOAT, WILD = keys.SLOT_FLOAT, keys.SLOT_WILDCARD


def native_key(x: float, precision: int, narrow: bool) -> str:
    return keys.KeyBuilder([(FLOAT, None, precision, narrow)]).build_row([x])


def reference_key(x: float, precision: int, narrow: bool) -> str:
    return keys_ref.go_format(keys_ref.round_value(x, precision, narrow), precision)


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(1, 17), st.booleans())
def test_any_float_any_precision(x: float, precision: int, narrow: bool) -> None:
    if narrow and abs(x) > 3.4e38:
        x = x / 1e300
    assert native_key(x, precision, narrow) == reference_key(x, precision, narrow)


@settings(max_examples=2000, deadline=None)
@given(st.integers(-(10**9), 10**9), st.integers(1, 6), st.booleans())
def test_values_on_and_near_the_key_grid(cents: int, precision: int, narrow: bool) -> None:
    for x in (cents / 10**precision, (cents + 0.5) / 10**precision, (cents + 0.4999999) / 10**precision):
        assert native_key(x, precision, narrow) == reference_key(x, precision, narrow)


@pytest.mark.parametrize("x", [0.0, -0.0, -0.001, -0.004, 0.005, 0.125, 2.675, 1e14, 1.1259e13, 1e15, 9.007199254740993e15,
                               -123456.789, 5e-324, 1.7976931348623157e308, 0.1 + 0.2])
@pytest.mark.parametrize("precision", [1, 2, 3, 9, 15, 16])
def test_edges(x: float, precision: int) -> None:
    assert native_key(x, precision, False) == reference_key(x, precision, False)


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.booleans())
def test_wildcard_floats(x: float, narrow: bool) -> None:
    kb = keys.KeyBuilder([(WILD, None, 0, narrow)])
    assert kb.build_row([x]) == keys_ref.wildcard_float_text(keys_ref.to_float32(x) if narrow else x, narrow)
