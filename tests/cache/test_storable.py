"""Storable registry and the default dict storable."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from mly.cache.storable import DictStorable, register_storable, resolve_storable, to_plain


def test_default_storable_makes_plain_values_that_print_like_the_row() -> None:
    row = {
        "score": np.float32(0.3),
        "count": np.int64(-(2**62)),
        "flag": np.bool_(True),
        "label": np.str_("one"),
        "vector": np.array([0.1, 0.2], dtype=np.float32),
        "nested": {"a": [1, np.int32(2)], "b": None},
        "plain": 1.5,
    }
    storable = resolve_storable("")
    assert isinstance(storable, DictStorable)
    fields = storable.to_fields(row)
    assert fields == {"score": 0.3, "count": -(2**62), "flag": True, "label": "one",
                      "vector": [0.1, 0.2], "nested": {"a": [1, 2], "b": None}, "plain": 1.5}
    for value in fields.values():
        assert type(value).__module__ == "builtins"
    back = storable.from_fields(fields)
    assert list(back) == sorted(row)
    # The JSON of the stored row equals the JSON the memory tier holds for the original row.
    sorted_row = dict(sorted(row.items()))
    assert orjson.dumps(back) == orjson.dumps(sorted_row, option=orjson.OPT_SERIALIZE_NUMPY)


def test_default_storable_needs_a_dict() -> None:
    with pytest.raises(TypeError, match="needs a dict row"):
        DictStorable().to_fields([1, 2])


def test_to_plain_rejects_what_json_cannot_hold() -> None:
    assert to_plain("x") == "x"
    with pytest.raises(TypeError, match="cannot store"):
        to_plain({"x": object()})


class Scored:
    def to_fields(self, row: Any) -> dict[str, Any]:
        return {"Class": row}

    def from_fields(self, fields: dict[str, Any]) -> Any:
        return fields["Class"]


def test_register_and_resolve() -> None:
    register_storable("test-scored", Scored())
    found = resolve_storable("test-scored")
    assert found.from_fields(found.to_fields("five")) == "five"

    @register_storable("test-decorated")
    class Decorated(Scored):
        pass

    assert isinstance(resolve_storable("test-decorated"), Decorated)
    with pytest.raises(ValueError, match="already registered"):
        register_storable("test-scored", DictStorable())
    with pytest.raises(TypeError, match="to_fields"):
        register_storable("test-broken", object())


def test_unknown_storable_is_named() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        resolve_storable("nope")
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve_storable("no_such_module_xyz:Thing")


def test_storable_by_import_path() -> None:
    storable = resolve_storable("mly.cache.storable:DictStorable")
    assert isinstance(storable, DictStorable)
