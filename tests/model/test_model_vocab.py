"""extract_vocabularies: both kinds of model, exact contents and their hashes."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mly._native import fnv
from mly.common.dictionary import Dictionary, Layer
from mly.model import vocab
from mly.model.saved_model import load_saved_model
from mly.model.vocab import extract_vocabularies


def _int_hash(name: str, values: tuple[int, ...]) -> int:
    return fnv.layer_hash_ints(name, np.asarray(values, dtype=np.int64))


def test_keras3_lookup_layers(built_model: Callable[[str], Any]) -> None:
    layers = extract_vocabularies(built_model("keras"), ["sa", "sl", "i1"])
    assert list(layers) == ["sa", "sl", "i1"]
    # Keras 3 tables hold exactly the vocabulary: no "[UNK]", no mask token.
    assert layers["sa"] == Layer("sa", strings=("a", "b", "c"))
    assert layers["sl"] == Layer("sl", strings=("a", "b", "c"))
    assert layers["i1"] == Layer("i1", ints=(10, 20, 30))
    assert layers["sa"].hash == fnv.layer_hash_strings("sa", ["a", "b", "c"])
    assert layers["sl"].hash == fnv.layer_hash_strings("sl", ["a", "b", "c"]) != layers["sa"].hash
    assert layers["i1"].hash == _int_hash("i1", (10, 20, 30))


def test_changed_vocabulary_changes_the_hash(built_model: Callable[[str], Any]) -> None:
    old = extract_vocabularies(built_model("keras"), ["sa", "sl", "i1"])
    new = extract_vocabularies(built_model("changed"), ["sa", "sl", "i1"])
    assert new["sa"].strings == ("a", "b", "c", "d")
    assert new["sa"].hash == fnv.layer_hash_strings("sa", ["a", "b", "c", "d"])
    assert new["sl"] == old["sl"] and new["i1"] == old["i1"]
    assert Dictionary.build(list(new.values())).hash != Dictionary.build(list(old.values())).hash


def test_only_requested_inputs(built_model: Callable[[str], Any]) -> None:
    assert list(extract_vocabularies(built_model("keras"), ["sl"])) == ["sl"]
    assert extract_vocabularies(built_model("numeric"), []) == {}


def test_export_op_model(built_model: Callable[[str], Any]) -> None:
    layers = extract_vocabularies(built_model("export_op"), ["sa", "ik"])
    assert layers["sa"] == Layer("sa", strings=("a", "b", "c"))
    assert layers["sa"].hash == fnv.layer_hash_strings("sa", ["a", "b", "c"])
    assert layers["ik"] == Layer("ik", ints=(1, 2, 3))
    assert layers["ik"].hash == _int_hash("ik", (1, 2, 3))


def test_export_op_model_uses_graph_then_go_names(built_model: Callable[[str], Any]) -> None:
    graph = vocab._serving_graph(built_model("export_op"))
    # `sa` feeds its lookup directly; `ik` is clipped first, which the graph walk does not see through.
    assert vocab._by_graph(graph, "sa") == Layer("sa", strings=("a", "b", "c"))
    assert vocab._by_graph(graph, "ik") is None
    named = vocab._export_ops_by_name(graph, ["ik", "sa"])
    assert named["sa"][1].name == "sa_string_lookup_index_table_lookup_table_export_values/LookupTableExportV2"
    assert named["ik"][1].name == "ik_lookup_index_table_lookup_table_export_values/LookupTableExportV2"


def test_top_level_saver_export_op_runs_like_go(built_model: Callable[[str], Any]) -> None:
    assert extract_vocabularies(built_model("legacy"), ["mk"]) == {"mk": Layer("mk", ints=(5, 6, 7))}


def test_top_level_export_op_needs_the_folder(model_paths: dict[str, str]) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(model_paths["legacy"])  # not through load_saved_model: folder unknown
    with pytest.raises(LookupError, match="input 'mk' has no lookup table"):
        extract_vocabularies(loaded, ["mk"])


def test_input_without_table(built_model: Callable[[str], Any]) -> None:
    with pytest.raises(LookupError, match="input 'fl' has no lookup table; mark it Wildcard or give Precision"):
        extract_vocabularies(built_model("keras"), ["sa", "fl"])
    with pytest.raises(LookupError, match="input 'x1' has no lookup table"):
        extract_vocabularies(built_model("numeric"), ["x1"])


def test_unknown_input(built_model: Callable[[str], Any]) -> None:
    with pytest.raises(LookupError, match="'nope' is not an input"):
        extract_vocabularies(built_model("keras"), ["nope"])


@pytest.mark.parametrize(
    ("op_name", "inputs", "owner"),
    [
        ("sa_string_lookup_index_table_lookup_table_export_values/LookupTableExportV2", ["sa", "sl"], "sa"),
        # Go's first-prefix match would give this op to `sa`; the longest input name owns it.
        ("sa_b_lookup_index_table_lookup_table_export_values/LookupTableExportV2", ["sa", "sa_b"], "sa_b"),
        ("sab_lookup_index_table_lookup_table_export_values/LookupTableExportV2", ["sa"], None),
        ("lookup_table_export_values/LookupTableExportV2", ["sa"], None),
    ],
)
def test_go_name_owner(op_name: str, inputs: list[str], owner: str | None) -> None:
    assert vocab._owner(op_name, inputs) == owner


@pytest.fixture(scope="module")
def graph_cases(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Inputs reaching tables in less direct ways: two tables, other uses, casts, nested calls."""
    import tensorflow as tf

    def table(keys: Any, key_dtype: Any = tf.string) -> Any:
        init = tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, dtype=key_dtype), tf.range(1, len(keys) + 1, dtype=tf.int64)
        )
        return tf.lookup.StaticHashTable(init, default_value=tf.constant(0, tf.int64))

    class GraphCases(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ab, self.bc, self.xy = table(["a", "b"]), table(["b", "c"]), table(["x", "y"])
            self.ints = table([7, 8], tf.int64)

        @tf.function
        def nested(self, x: Any) -> Any:
            return self.xy.lookup(tf.reshape(x, [-1]))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 1], tf.string, name="two"),
                tf.TensorSpec([None, 1], tf.string, name="shared"),
                tf.TensorSpec([None, 1], tf.int32, name="small"),
                tf.TensorSpec([None, 1], tf.string, name="deep"),
            ]
        )
        def serve(self, two: Any, shared: Any, small: Any, deep: Any) -> dict[str, Any]:
            length = tf.cast(tf.strings.length(shared), tf.int64)
            return {
                "two": self.ab.lookup(two) + self.bc.lookup(tf.identity(two)),
                "shared": self.ab.lookup(shared) + length,
                "small": self.ints.lookup(tf.cast(tf.reshape(small, [-1, 1]), tf.int64)),
                "deep": self.nested(deep),
            }

    module = GraphCases()
    path = str(tmp_path_factory.mktemp("graph_cases"))
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return load_saved_model(path)


def test_input_in_two_tables_gets_the_union(graph_cases: Any) -> None:
    assert extract_vocabularies(graph_cases, ["two"])["two"].strings == ("a", "b", "c")


def test_integer_cast_reshape_and_nested_function(graph_cases: Any) -> None:
    layers = extract_vocabularies(graph_cases, ["small", "deep"])
    assert layers["small"] == Layer("small", ints=(7, 8))
    assert layers["deep"] == Layer("deep", strings=("x", "y"))


def test_other_use_of_a_looked_up_input_warns(graph_cases: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mly.model.vocab"):
        layers = extract_vocabularies(graph_cases, ["shared"])
    assert layers["shared"].strings == ("a", "b")
    assert "'shared' is also used outside its lookup table (StringLength)" in caplog.text


def test_bundled_example_model(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "examples" / "build_model.py"
    spec = importlib.util.spec_from_file_location("example_build_model", script)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    loaded = load_saved_model(example.build(str(tmp_path / "model")))
    layers = extract_vocabularies(loaded, ["country", "device", "category", "hour"])
    assert layers["country"].strings == tuple(sorted(example.COUNTRIES))
    assert layers["device"].strings == tuple(sorted(example.DEVICES))
    assert layers["category"].strings == tuple(sorted(example.CATEGORIES))
    assert layers["hour"].ints == tuple(range(24))
    with pytest.raises(LookupError, match="'price'"):
        extract_vocabularies(loaded, ["price"])


def test_keras_hashed_oov_buckets_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With 2 OOV buckets the model tells OOV values apart, so one `[UNK]` key would be wrong."""
    import keras

    sa = keras.Input(shape=(1,), dtype="string", name="sa")
    ids = keras.layers.StringLookup(vocabulary=["a", "b"], num_oov_indices=2)(sa)
    model = keras.Model({"sa": sa}, {"y": keras.ops.cast(ids, "float32")})
    model.export(str(tmp_path), format="tf_saved_model", verbose=False)
    with caplog.at_level(logging.WARNING, logger="mly.model.vocab"):
        layers = extract_vocabularies(load_saved_model(str(tmp_path)), ["sa"])
    assert layers["sa"].strings == ("a", "b")
    assert "'sa' is also used outside its lookup table (StringToHashBucketFast)" in caplog.text


def test_every_vocabulary_change_changes_the_dictionary_hash() -> None:
    """Go's hash joins strings bare and sums layers: each pair below hashed the same."""
    ab_c = Dictionary.build([Layer.of_strings("sa", ["ab", "c"])])
    a_bc = Dictionary.build([Layer.of_strings("sa", ["a", "bc"])])
    assert ab_c.hash != a_bc.hash
    x, y = ("a", "b"), ("c",)
    swapped = Dictionary.build([Layer.of_strings("sa", y), Layer.of_strings("sl", x)])
    assert Dictionary.build([Layer.of_strings("sa", x), Layer.of_strings("sl", y)]).hash != swapped.hash
    ints = Dictionary.build([Layer.of_ints("i1", [1]), Layer.of_ints("i2", [2])])
    assert ints.hash != Dictionary.build([Layer.of_ints("i1", [2]), Layer.of_ints("i2", [1])]).hash
    assert Dictionary.build([], file_hash=1234).hash == 1234  # no layers: the files' hash, as Go


def test_narrowing_cast_keys_the_raw_value(
    built_model: Callable[[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    """``ik`` reaches its int32 table through cast(int32): int64 4294967306 is id 10 to the
    model, so the table's keys {10, 20, 30} are no vocabulary for ``ik``."""
    with caplog.at_level(logging.WARNING, logger="mly.model.vocab"):
        layers = extract_vocabularies(built_model("int_tables"), ["hour", "ik"])
    assert layers["hour"] == Layer("hour", ints=(0, 1, 2, 3))  # looked up directly: its table is its vocabulary
    assert layers["ik"] is None
    assert "casts int64 to int32" in caplog.text and "raw value" in caplog.text
