"""Small SavedModels for tests, built in seconds with fixed weights (no training).

Each ``build_*`` takes an output folder, writes a SavedModel with a
``serving_default`` signature there and returns the folder. The weights are
set explicitly, so tests can compare outputs with values computed by hand
(``expected_keras_lookup``) as well as with the Keras model itself.
TensorFlow is imported inside the functions so importing this module is free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "KERAS_I1_VOCAB",
    "KERAS_SA_VOCAB",
    "KERAS_SL_VOCAB",
    "build_changed_vocab_model",
    "build_export_op_model",
    "build_int_tables_model",
    "build_keras_lookup_model",
    "build_legacy_export_model",
    "build_numeric_model",
    "build_reweighted_model",
    "expected_keras_lookup",
]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KERAS_SA_VOCAB = ("a", "b", "c")
KERAS_SL_VOCAB = ("a", "b", "c")
KERAS_I1_VOCAB = (10, 20, 30)

# score = sa_idx + 10*sl_idx + 100*i1_idx + 0.5*fl + 0.25, where *_idx is the
# lookup index (1-based; 0 for out-of-vocabulary), so each input's effect is
# visible in the digits of the score.
_SCORE_KERNEL = np.array([[1.0], [10.0], [100.0], [0.5]], dtype=np.float32)
_SCORE_BIAS = np.array([0.25], dtype=np.float32)
# vec = [sa_idx, sl_idx, i1_idx + fl + 0.5]; label_id = argmax(vec).
_VEC_KERNEL = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=np.float32)
_VEC_BIAS = np.array([0.0, 0.0, 0.5], dtype=np.float32)


def _keras_lookup_model(sa_vocab: Sequence[str], score_bias: float = float(_SCORE_BIAS[0])) -> Any:
    import keras

    sa = keras.Input(shape=(1,), dtype="string", name="sa")
    sl = keras.Input(shape=(1,), dtype="string", name="sl")
    i1 = keras.Input(shape=(1,), dtype="int64", name="i1")
    fl = keras.Input(shape=(1,), dtype="float32", name="fl")
    # Layer names follow Go's `<input>_...` convention, though Keras 3 saves no
    # export op for them: the tables are found by following the graph.
    sa_idx = keras.layers.StringLookup(vocabulary=list(sa_vocab), name="sa_string_lookup")(sa)
    sl_idx = keras.layers.StringLookup(vocabulary=list(KERAS_SL_VOCAB), name="sl_string_lookup")(sl)
    i1_idx = keras.layers.IntegerLookup(vocabulary=list(KERAS_I1_VOCAB), name="i1_integer_lookup")(i1)
    x = keras.layers.Concatenate(name="features")(
        [keras.ops.cast(sa_idx, "float32"), keras.ops.cast(sl_idx, "float32"), keras.ops.cast(i1_idx, "float32"), fl]
    )
    score = keras.layers.Dense(1, name="score")(x)
    vec = keras.layers.Dense(3, name="vec")(x)
    label_id = keras.ops.cast(keras.ops.expand_dims(keras.ops.argmax(vec, axis=-1), -1), "int64")
    model = keras.Model(
        inputs={"sa": sa, "sl": sl, "i1": i1, "fl": fl},
        outputs={"score": score, "label_id": label_id, "vec": vec},
        name="keras_lookup",
    )
    model.get_layer("score").set_weights([_SCORE_KERNEL, np.array([score_bias], np.float32)])
    model.get_layer("vec").set_weights([_VEC_KERNEL, _VEC_BIAS])
    return model


def _export_keras(model: Any, out_dir: str) -> str:
    model.export(out_dir, format="tf_saved_model", verbose=False)
    return out_dir


def build_keras_lookup_model(out_dir: str) -> str:
    """Keras 3 model: StringLookup on ``sa``/``sl``, IntegerLookup on ``i1``, numeric ``fl``.

    Outputs ``score`` (float32 [rows,1]), ``label_id`` (int64 [rows,1]) and the
    wide ``vec`` (float32 [rows,3]).
    """
    return _export_keras(_keras_lookup_model(KERAS_SA_VOCAB), str(out_dir))


def build_changed_vocab_model(out_dir: str) -> str:
    """The keras lookup model with ``sa``'s vocabulary grown to a,b,c,d (reload / stale-cache tests)."""
    return _export_keras(_keras_lookup_model((*KERAS_SA_VOCAB, "d")), str(out_dir))


def build_reweighted_model(out_dir: str, score_bias: float = 1000.25) -> str:
    """The keras lookup model retrained: same vocabularies (same dictionary hash), ``score``
    shifted by ``score_bias - 0.25``, so every row's answer tells the two versions apart."""
    return _export_keras(_keras_lookup_model(KERAS_SA_VOCAB, score_bias), str(out_dir))


def expected_keras_lookup(
    sa: Sequence[str],
    sl: Sequence[str],
    i1: Sequence[int],
    fl: Sequence[float],
    sa_vocab: Sequence[str] = KERAS_SA_VOCAB,
) -> dict[str, np.ndarray]:
    """The keras lookup model's outputs computed by hand (index 0 = out of vocabulary)."""

    def index(values: Sequence[Any], vocab: Sequence[Any]) -> np.ndarray:
        return np.array([vocab.index(v) + 1 if v in vocab else 0 for v in values], dtype=np.float32)

    x = np.stack(
        [index(sa, sa_vocab), index(sl, KERAS_SL_VOCAB), index(i1, KERAS_I1_VOCAB), np.asarray(fl, np.float32)],
        axis=1,
    )
    vec = x @ _VEC_KERNEL + _VEC_BIAS
    return {
        "score": x @ _SCORE_KERNEL + _SCORE_BIAS,
        "vec": vec,
        "label_id": np.argmax(vec, axis=1).astype(np.int64).reshape(-1, 1),
    }


def build_export_op_model(out_dir: str) -> str:
    """A ``tf.Module`` with StaticHashTables and explicit Go-convention export ops.

    ``sa`` (string) is looked up directly, so graph following finds its table;
    ``ik`` (int64) is clipped before its lookup (an op graph following does not
    see through), so only the export op named ``ik_lookup_index_table_...`` ties
    it to its table, as in Go. Outputs: ``sa_id`` (int64) and ``s1`` (string).
    """
    import tensorflow as tf

    class ExportOpModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sa_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(["a", "b", "c"]), tf.constant([1, 2, 3], dtype=tf.int64)
                ),
                default_value=tf.constant(0, dtype=tf.int64),
                name="sa_string_lookup_index_table",
            )
            self.ik_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant([1, 2, 3], dtype=tf.int64), tf.constant(["one", "two", "three"])
                ),
                default_value="",
                name="ik_lookup_index_table",
            )

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 1], tf.string, name="sa"),
                tf.TensorSpec([None, 1], tf.int64, name="ik"),
            ]
        )
        def serve(self, sa: Any, ik: Any) -> dict[str, Any]:
            # The ops Go's MatchOperation looks for: `<input>_..._LookupTableExportV2`.
            # Stateful, so the function keeps them although nothing reads their output.
            with tf.name_scope("sa_string_lookup_index_table_lookup_table_export_values"):
                tf.raw_ops.LookupTableExportV2(
                    table_handle=self.sa_table.resource_handle, Tkeys=tf.string, Tvalues=tf.int64
                )
            with tf.name_scope("ik_lookup_index_table_lookup_table_export_values"):
                tf.raw_ops.LookupTableExportV2(
                    table_handle=self.ik_table.resource_handle, Tkeys=tf.int64, Tvalues=tf.string
                )
            return {
                "sa_id": self.sa_table.lookup(sa),
                "s1": self.ik_table.lookup(tf.clip_by_value(ik, 0, 1000)),
            }

    module = ExportOpModel()
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": module.serve})
    return str(out_dir)


def build_legacy_export_model(out_dir: str) -> str:
    """A model whose only link from input ``mk`` to its table is a top-level saver op.

    The table is a ``MutableHashTable`` named ``mk_lookup_index_table`` (keys
    5, 6, 7), so the checkpoint saver writes a top-level
    ``mk_lookup_index_table_lookup_table_export_values/LookupTableExportV2`` op:
    the shape of the Keras 2 era models Go's naming convention was made for.
    ``mk`` is clipped before the lookup, so graph following finds nothing.
    Output: ``score`` (float32).
    """
    import tensorflow as tf

    class LegacyExportModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = tf.lookup.experimental.MutableHashTable(
                key_dtype=tf.int64, value_dtype=tf.float32, default_value=0.0, name="mk_lookup_index_table"
            )
            self.table.insert(tf.constant([5, 6, 7], tf.int64), tf.constant([0.5, 0.6, 0.7]))

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.int64, name="mk")])
        def serve(self, mk: Any) -> dict[str, Any]:
            return {"score": self.table.lookup(tf.clip_by_value(mk, 0, 100))}

    module = LegacyExportModel()
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": module.serve})
    return str(out_dir)


def build_numeric_model(out_dir: str) -> str:
    """Float inputs only (``x1`` float32, ``x2`` float64): ``y = 2*x1 + 3*x2 + 1`` (float32 [rows,1])."""
    import keras

    x1 = keras.Input(shape=(1,), dtype="float32", name="x1")
    x2 = keras.Input(shape=(1,), dtype="float64", name="x2")
    x = keras.layers.Concatenate(name="features")([x1, keras.ops.cast(x2, "float32")])
    y = keras.layers.Dense(1, name="y")(x)
    model = keras.Model(inputs={"x1": x1, "x2": x2}, outputs={"y": y}, name="numeric")
    model.get_layer("y").set_weights([np.array([[2.0], [3.0]], np.float32), np.array([1.0], np.float32)])
    return _export_keras(model, str(out_dir))


def build_slow_model(out_dir: str, size: int = 1200, rounds: int = 4) -> str:
    """One float input ``x``; each call does ``rounds`` ``size x size`` matmuls (tens of ms
    on one core), so tests can fill a batch queue or pass a deadline for real."""
    import tensorflow as tf

    class Slow(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = tf.Variable(tf.random.stateless_uniform([size, size], seed=[1, 2]) / size)

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            acc = self.m
            for _ in range(rounds):
                acc = tf.matmul(acc, self.m)
            return {"y": x + tf.reduce_sum(acc) * 0.0}

    module = Slow()
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": module.serve})
    return str(out_dir)


INT_TABLES_HOUR = {0: 0.125, 1: 0.25, 2: 0.375, 3: 0.5}
INT_TABLES_HOUR_OOV = 0.875
INT_TABLES_IK = (10, 20, 30)


def build_int_tables_model(out_dir: str) -> str:
    """Two int64 inputs looked up in tables, ``score = hour_value + 10 * ik_value``.

    ``hour``'s table holds 0..3 (0 is a real id, as in the example's ``hour``); an unknown
    hour gets ``INT_TABLES_HOUR_OOV``. ``ik`` is cast to int32 before its int32 table
    (keys ``INT_TABLES_IK`` -> 1.0, else 0.0), so int64 4294967306 wraps to 10: the
    table's keys are not ``ik``'s vocabulary.
    """
    import tensorflow as tf

    class IntTables(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hour = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(INT_TABLES_HOUR), tf.int64), tf.constant(list(INT_TABLES_HOUR.values()))
                ),
                default_value=INT_TABLES_HOUR_OOV,
            )
            self.ik = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(INT_TABLES_IK, tf.int32), tf.constant([1.0] * len(INT_TABLES_IK))
                ),
                default_value=0.0,
            )

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.int64, name="hour"),
                                      tf.TensorSpec([None, 1], tf.int64, name="ik")])
        def serve(self, hour: Any, ik: Any) -> dict[str, Any]:
            return {"score": self.hour.lookup(hour) + 10.0 * self.ik.lookup(tf.cast(ik, tf.int32))}

    module = IntTables()
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": module.serve})
    return str(out_dir)


def build_checked_model(out_dir: str) -> str:
    """``y = 2 * x`` that fails at run time (InvalidArgumentError) for any negative ``x``:
    a real TensorFlow error caused by one request's value."""
    import tensorflow as tf

    class Checked(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            with tf.control_dependencies([tf.debugging.assert_greater_equal(x, 0.0, message="x must be >= 0")]):
                return {"y": x * 2.0}

    module = Checked()
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": module.serve})
    return str(out_dir)
