"""The two ways the server keys a row agree: from plain JSON values (single-row cache
hits, no numpy) and from encoded columns (batches and misses). If they ever differed,
a row written by one path would be missed, or worse, mismatched, by the other."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mly._native import encode
from mly.common.dictionary import Dictionary, Layer
from mly.common.keys import KeySchema
from mly.config.schema import InputField

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
