"""Transformers: the default one's shapes, and how a config name resolves."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from mly.service.transform import TransformInput, default_transformer, register_transformer, resolve_transformer


def data(outputs: dict[str, np.ndarray], rows: int) -> TransformInput:
    return TransformInput("m", rows, {}, outputs, sorted(outputs))


def test_default_transformer_shapes() -> None:
    out = default_transformer(data({
        "b_scalar": np.array([1.5, 2.5], dtype=np.float32),
        "a_col": np.array([[7], [8]], dtype=np.int64),
        "c_wide": np.array([[0.1, 0.2, 0.3], [1, 2, 3]], dtype=np.float32),
        "d_text": np.array([["x"], ["y"]], dtype=object),
    }, 2))
    assert list(out[0]) == ["a_col", "b_scalar", "c_wide", "d_text"]  # sorted names
    # float32 prints as float32 (0.1, not 0.10000000149011612), wide outputs keep every value.
    assert orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY) == (
        b'[{"a_col":7,"b_scalar":1.5,"c_wide":[0.1,0.2,0.3],"d_text":"x"},'
        b'{"a_col":8,"b_scalar":2.5,"c_wide":[1.0,2.0,3.0],"d_text":"y"}]'
    )


def test_registered_name_and_module_path() -> None:
    @register_transformer("test-double-score")
    def double(d: TransformInput) -> list[dict]:
        return [{"s": 2 * v} for v in d.outputs["s"].tolist()]

    assert resolve_transformer("test-double-score") is double
    assert resolve_transformer("") is default_transformer
    assert resolve_transformer("mly.service.transform:default_transformer") is default_transformer
    with pytest.raises(ValueError, match="already registered"):
        register_transformer("test-double-score")(lambda d: [])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown transformer 'nope'"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("mly.service.transform:missing", "has no function 'missing'"),
    ],
)
def test_unknown_transformers_are_named(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_transformer(name)
