"""read_signature: sorted inputs and outputs, canonical dtypes, static shapes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mly.model.signature import Signature, TensorInfo, read_signature


def test_keras_model_signature(built_model: Callable[[str], Any]) -> None:
    sig = read_signature(built_model("keras"))
    assert sig == Signature(
        inputs=(
            TensorInfo("fl", "float32", (None, 1)),
            TensorInfo("i1", "int64", (None, 1)),
            TensorInfo("sa", "string", (None, 1)),
            TensorInfo("sl", "string", (None, 1)),
        ),
        outputs=(
            TensorInfo("label_id", "int64", (None, 1)),
            TensorInfo("score", "float32", (None, 1)),
            TensorInfo("vec", "float32", (None, 3)),
        ),
    )
    assert sig.input_names == ("fl", "i1", "sa", "sl")
    assert sig.output("vec") is not None and sig.output("vec").width == 3  # type: ignore[union-attr]
    assert sig.input("missing") is None


def test_tf_module_signature(built_model: Callable[[str], Any]) -> None:
    sig = read_signature(built_model("export_op"))
    assert [(t.name, t.dtype) for t in sig.inputs] == [("ik", "int64"), ("sa", "string")]
    assert [(t.name, t.dtype, t.shape) for t in sig.outputs] == [
        ("s1", "string", (None, 1)),
        ("sa_id", "int64", (None, 1)),
    ]


def test_numeric_signature(built_model: Callable[[str], Any]) -> None:
    sig = read_signature(built_model("numeric"))
    assert [(t.name, t.dtype) for t in sig.inputs] == [("x1", "float32"), ("x2", "float64")]


def test_unknown_signature_key(built_model: Callable[[str], Any]) -> None:
    with pytest.raises(ValueError, match="no 'predict' signature"):
        read_signature(built_model("numeric"), key="predict")


def test_tensor_info_rejects_unsupported_dtype() -> None:
    with pytest.raises(ValueError, match="'h' has dtype 'float16'"):
        TensorInfo("h", "float16", (None, 1))


def test_unsupported_dtype_in_model_names_the_tensor(tmp_path: Path) -> None:
    import tensorflow as tf

    class Half(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float16, name="h")])
        def serve(self, h: Any) -> dict[str, Any]:
            return {"y": tf.cast(h, tf.float32)}

    module = Half()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    from mly.model.saved_model import load_saved_model

    with pytest.raises(ValueError, match="signature input tensor 'h' has dtype 'float16'"):
        read_signature(load_saved_model(str(tmp_path)))
