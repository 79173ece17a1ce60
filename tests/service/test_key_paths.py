"""The two ways the server keys a row agree: from plain JSON values (single-row cache
hits, no numpy) and from encoded columns (batches and misses). If they ever differed,
a row written by one path would be missed, or worse, mismatched, by the other."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mly._native import encode
from mly.common.dictionary import Dictionary, Layer
from mly.common.keys import KeySchema
from mly.config.schema import InputField
from mly.errors import InputError

INPUTS = (
    InputField("s", 0, "string"),
    InputField("i", 1, "int64"),
    InputField("f32", 2, "float", precision=2),
    InputField("f64", 3, "float64", precision=3),
    InputField("w", 4, "string", wildcard=True),
    InputField("wf", 5, "float", wildcard=True),
    InputField("aux", 6, "string", auxiliary=True),
)
CODES = {"s": encode.DT_STRING, "i": encode.DT_INT64, "f32": encode.DT_FLOAT32, "f64": encode.DT_FLOAT64,
         "w": encode.DT_STRING, "wf": encode.DT_FLOAT32, "aux": encode.DT_STRING}
PRECISION = {"f32": 2, "f64": 3}
SCHEMA = KeySchema(INPUTS, Dictionary.build([Layer.of_strings("s", ["a", "b/c", "ü"]), Layer.of_ints("i", [1, 7])]))

texts = st.text(alphabet=st.sampled_from(["a", "b", "/", "\\", "c", "ü", "[", "]"]), max_size=4)
floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
rows = st.fixed_dictionaries({
    "s": st.one_of(st.sampled_from(["a", "b/c", "ü", "zz"]), texts),
    "i": st.one_of(st.sampled_from([1, 7, 0, -3]), st.integers(-(2**63), 2**63 - 1)),
    "f32": floats, "f64": floats, "w": texts, "wf": floats, "aux": texts,
})


@settings(max_examples=400, deadline=None)
@given(rows)
def test_plain_key_equals_encoded_key(row: dict) -> None:
    plain = SCHEMA.key_if_plain(row)
    assert plain is not None
    columns = {name: encode.encode_column(name, CODES[name], value, 1, False, PRECISION.get(name, 0))
               for name, value in row.items()}
    assert plain == SCHEMA.keys(columns, 1)[0]


def test_unusual_values_take_the_full_path() -> None:
    row = {"s": "a", "i": 1, "f32": 1.0, "f64": 1.0, "w": "x", "wf": 0.5, "aux": "n"}
    assert SCHEMA.key_if_plain(row) is not None
    for name, value in (("i", True), ("i", 1.0), ("f32", 1), ("s", 5), ("i", 2**63), ("wf", None), ("aux", 5)):
        assert SCHEMA.key_if_plain({**row, name: value}) is None, (name, value)


AUX_FLOATS = KeySchema(
    (InputField("s", 0, "string"), InputField("f", 1, "float", precision=2),
     InputField("boost", 2, "float", auxiliary=True), InputField("d", 3, "float64", auxiliary=True)),
    Dictionary.build([Layer.of_strings("s", ["a"])]),
)
_FLOAT32_OVERFLOW = 2.0**128 - 2.0**103  # half an ulp past float32's largest: narrows to infinity


def test_floats_encoding_refuses_take_the_full_path_keyed_or_not() -> None:
    """A cached row must not turn a value encoding refuses (past float32, not finite) into a 200."""
    row = {"s": "a", "f": 0.5, "boost": 0.5, "d": 0.5}
    codes = {"s": encode.DT_STRING, "f": encode.DT_FLOAT32, "boost": encode.DT_FLOAT32, "d": encode.DT_FLOAT64}
    largest_fine = math.nextafter(_FLOAT32_OVERFLOW, 0)
    for name, value in (("boost", 3.4028235e38), ("boost", -largest_fine), ("f", largest_fine), ("d", 1e308)):
        assert AUX_FLOATS.key_if_plain({**row, name: value}) is not None, (name, value)
        encode.encode_column(name, codes[name], value, 1, False, 2 if name == "f" else 0)  # accepted there too
    for name, value in (("boost", 1e39), ("boost", -3.5e38), ("boost", _FLOAT32_OVERFLOW), ("boost", math.inf),
                        ("boost", math.nan), ("f", 1e39), ("f", -math.inf), ("d", math.inf), ("d", math.nan)):
        assert AUX_FLOATS.key_if_plain({**row, name: value}) is None, (name, value)
        with pytest.raises(InputError):
            encode.encode_column(name, codes[name], value, 1, False, 2 if name == "f" else 0)


# --- batches: keys straight from the JSON lists (all-hit batches skip encoding) ------------------

anything = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(), texts,
                     st.lists(st.integers(), max_size=2))
values = {
    "s": st.one_of(st.sampled_from(["a", "b/c", "ü", "zz"]), texts),
    "i": st.one_of(st.sampled_from([1, 7, 0, -3]), st.integers(-(2**63), 2**63 - 1)),
    "f32": st.floats(min_value=-1e30, max_value=1e30, allow_nan=False), "f64": floats, "w": texts,
    "wf": floats, "aux": texts,
}


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict, int]:
    n_rows = draw(st.integers(1, 6))
    body = {}
    for name, good in values.items():
        element = st.one_of(good, anything) if draw(st.integers(0, 4)) == 0 else good
        length = draw(st.sampled_from([1, n_rows, n_rows, n_rows + 1, 0]))
        body[name] = draw(st.lists(element, min_size=length, max_size=length))
        if draw(st.integers(0, 15)) == 0:
            body[name] = draw(anything)
    return body, n_rows


@settings(max_examples=500, deadline=None)
@given(batches())
def test_batch_keys_from_json_lists_equal_the_encoded_keys(case: tuple[dict, int]) -> None:
    """Whenever the plain path keys a batch, the encoding path accepts it and gives the same keys;
    whenever the encoding path refuses a batch, the plain path gives no keys (never a cached 200)."""
    body, n_rows = case
    plain = SCHEMA.keys_if_plain(body, n_rows)
    try:
        columns = {name: encode.encode_column(name, CODES[name], value, n_rows, True, PRECISION.get(name, 0))
                   for name, value in body.items()}
    except Exception:
        assert plain is None
        return
    encoded = SCHEMA.keys(columns, n_rows)
    if plain is not None:
        assert plain == encoded


def test_plain_batch_keys_for_the_usual_shapes() -> None:
    body = {"s": ["a", "zz"], "i": [7], "f32": [1.005, 2.0], "f64": [0.5, 0.25], "w": ["x/y", "z"],
            "wf": [0.5], "aux": ["n"]}
    keys = SCHEMA.keys_if_plain(body, 2)
    columns = {name: encode.encode_column(name, CODES[name], value, 2, True, PRECISION.get(name, 0))
               for name, value in body.items()}
    assert keys == SCHEMA.keys(columns, 2) and len(keys) == 2
    for name, value in (("i", [True]), ("f32", [1]), ("s", [5]), ("i", [2**63]), ("f32", [1e39]),
                        ("f64", [float("nan")]), ("aux", "n"), ("s", [])):
        assert SCHEMA.keys_if_plain({**body, name: value}, 2) is None, (name, value)
