"""ModelRunner: 1-D columns in, correct numpy outputs out, from many threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import model_builders
import numpy as np
import pytest

from mly.errors import EvaluationError
from mly.model.runner import ModelRunner
from mly.model.signature import read_signature


def _runner(built_model: Callable[[str], Any], name: str) -> ModelRunner:
    loaded = built_model(name)
    return ModelRunner(loaded, read_signature(loaded))


def _strings(*values: str) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


ROWS = {
    "sa": ["a", "b", "zz", "c"],
    "sl": ["c", "a", "b", "nope"],
    "i1": [30, 10, 99, 20],
    "fl": [2.0, -1.5, 0.0, 7.25],
}


def _feeds(rows: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    return {
        "sa": _strings(*rows["sa"]),
        "sl": _strings(*rows["sl"]),
        "i1": np.asarray(rows["i1"], dtype=np.int64),
        "fl": np.asarray(rows["fl"], dtype=np.float32),
    }


def test_keras_outputs_match_hand_computed(built_model: Callable[[str], Any]) -> None:
    out = _runner(built_model, "keras").run(_feeds(ROWS))
    expected = model_builders.expected_keras_lookup(ROWS["sa"], ROWS["sl"], ROWS["i1"], ROWS["fl"])
    assert list(out) == ["label_id", "score", "vec"]
    assert out["score"].dtype == np.float32 and out["score"].shape == (4, 1)
    assert out["vec"].dtype == np.float32 and out["vec"].shape == (4, 3)
    assert out["label_id"].dtype == np.int64 and out["label_id"].shape == (4, 1)
    np.testing.assert_allclose(out["score"], expected["score"], rtol=1e-6)
    np.testing.assert_allclose(out["vec"], expected["vec"], rtol=1e-6)
    np.testing.assert_array_equal(out["label_id"], expected["label_id"])
    # a=1, c=3 (sl), 30=3 (i1), fl=2: 1 + 30 + 300 + 1 + 0.25
    assert out["score"][0, 0] == pytest.approx(332.25)


def test_outputs_match_the_model_itself(built_model: Callable[[str], Any]) -> None:
    import tensorflow as tf

    loaded = built_model("keras")
    feeds = _feeds(ROWS)
    own = loaded.signatures["serving_default"](
        **{k: tf.constant(v.reshape(-1, 1), dtype=tf.string if v.dtype == object else None) for k, v in feeds.items()}
    )
    out = _runner(built_model, "keras").run(feeds)
    for name, value in own.items():
        np.testing.assert_array_equal(out[name], value.numpy())


def test_changed_vocabulary_model(built_model: Callable[[str], Any]) -> None:
    rows = {"sa": ["d"], "sl": ["a"], "i1": [10], "fl": [0.0]}
    out = _runner(built_model, "changed").run(_feeds(rows))
    expected = model_builders.expected_keras_lookup(
        rows["sa"], rows["sl"], rows["i1"], rows["fl"], sa_vocab=("a", "b", "c", "d")
    )
    np.testing.assert_allclose(out["score"], expected["score"])
    assert out["score"][0, 0] == pytest.approx(4 + 10 + 100 + 0.25)


def test_string_outputs_are_str_objects(built_model: Callable[[str], Any]) -> None:
    out = _runner(built_model, "export_op").run({"sa": _strings("a", "zz", "c"), "ik": np.array([2, 9, 1], np.int64)})
    assert out["s1"].dtype == object and out["s1"].shape == (3, 1)
    assert out["s1"].ravel().tolist() == ["two", "", "one"]
    assert all(type(v) is str for v in out["s1"].ravel())
    assert out["sa_id"].ravel().tolist() == [1, 0, 3]


def test_numeric_model_and_dtype_conversion(built_model: Callable[[str], Any]) -> None:
    runner = _runner(built_model, "numeric")
    # float64 column for the float32 input and python ints for the float64 one are converted.
    out = runner.run({"x1": np.array([1.0, 0.5]), "x2": np.array([2, -1])})
    np.testing.assert_allclose(out["y"], [[9.0], [-1.0]])


def test_int32_column_for_int64_input_and_2d_feed(built_model: Callable[[str], Any]) -> None:
    feeds = _feeds(ROWS)
    feeds["i1"] = feeds["i1"].astype(np.int32)
    feeds["fl"] = feeds["fl"].reshape(-1, 1)  # already [rows, 1]: passed as is
    out = _runner(built_model, "keras").run(feeds)
    expected = model_builders.expected_keras_lookup(ROWS["sa"], ROWS["sl"], ROWS["i1"], ROWS["fl"])
    np.testing.assert_allclose(out["score"], expected["score"], rtol=1e-6)


def test_missing_input(built_model: Callable[[str], Any]) -> None:
    feeds = _feeds(ROWS)
    del feeds["sl"]
    with pytest.raises(ValueError, match="missing input 'sl'"):
        _runner(built_model, "keras").run(feeds)


def test_tensorflow_failure_is_an_evaluation_error(built_model: Callable[[str], Any]) -> None:
    feeds = _feeds(ROWS)
    feeds["fl"] = feeds["fl"][:2]  # rows disagree: TF fails inside the graph
    with pytest.raises(EvaluationError, match="model evaluation failed"):
        _runner(built_model, "keras").run(feeds)


def test_public_call_fallback(built_model: Callable[[str], Any]) -> None:
    runner = _runner(built_model, "keras")

    def broken(*_: Any) -> Any:
        raise TypeError("signature changed")

    runner._call_flat = broken  # as if a TF version changed the private method
    out = runner.run(_feeds(ROWS))
    assert runner._call_flat is None
    expected = model_builders.expected_keras_lookup(ROWS["sa"], ROWS["sl"], ROWS["i1"], ROWS["fl"])
    np.testing.assert_allclose(out["score"], expected["score"], rtol=1e-6)


def test_tensor_fallback_and_strided_columns(built_model: Callable[[str], Any]) -> None:
    """Columns that are views with strides (not contiguous) give the same answer, on the direct
    tensor path and on ``tf.constant`` after a TF version changed the private parts."""
    runner = _runner(built_model, "keras")
    expected = model_builders.expected_keras_lookup(ROWS["sa"], ROWS["sl"], ROWS["i1"], ROWS["fl"])
    strided = {name: np.repeat(column, 2)[::2] for name, column in _feeds(ROWS).items()}
    assert not strided["fl"].flags.c_contiguous or strided["fl"].strides != (4,)
    assert runner._eager is not None
    np.testing.assert_allclose(runner.run(strided)["score"], expected["score"], rtol=1e-6)
    bad = _feeds(ROWS)
    bad["sa"][1] = None
    with pytest.raises(ValueError, match="NoneType"):
        runner.run(bad)
    assert runner._eager is not None  # a bad value is not a changed TensorFlow

    def broken(*_: Any) -> Any:
        raise TypeError("EagerTensor changed")

    runner._eager = broken
    out = runner.run(strided)
    assert runner._eager is None
    np.testing.assert_allclose(out["score"], expected["score"], rtol=1e-6)


def test_many_threads(built_model: Callable[[str], Any]) -> None:
    runner = _runner(built_model, "keras")
    errors: list[BaseException] = []
    vocab, ints = ["a", "b", "c", "x"], [10, 20, 30, 5]

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(40):
                n = int(rng.integers(1, 6))
                rows = {
                    "sa": [vocab[i] for i in rng.integers(0, 4, n)],
                    "sl": [vocab[i] for i in rng.integers(0, 4, n)],
                    "i1": [ints[i] for i in rng.integers(0, 4, n)],
                    "fl": rng.normal(size=n).astype(np.float32).tolist(),
                }
                out = runner.run(_feeds(rows))
                expected = model_builders.expected_keras_lookup(rows["sa"], rows["sl"], rows["i1"], rows["fl"])
                np.testing.assert_allclose(out["score"], expected["score"], rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(out["vec"], expected["vec"], rtol=1e-5, atol=1e-5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
