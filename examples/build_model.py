"""Build the bundled example model: a small click-through-rate model with lookup layers.

Usage: ``python examples/build_model.py [OUTPUT_DIR]`` (default: ``examples/model``
next to this script). The weights come from a fixed seed, so every build
serves the same predictions and the same dictionary hash.

Inputs (each ``[rows, 1]``):
    country   string  StringLookup (ca, de, fr, gb, jp, us)        -> vocabulary layer
    device    string  StringLookup (desktop, mobile, tablet)       -> vocabulary layer
    category  string  StringLookup (books, electronics, ...)       -> vocabulary layer
    hour      int64   IntegerLookup (0..23)                        -> vocabulary layer
    price     float32 used numerically                             -> key it with Precision
Outputs:
    ctr       float32 [rows, 1]  predicted click-through rate in (0, 1)
    segment   string  [rows, 1]  "low", "medium" or "high"
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

COUNTRIES = ["ca", "de", "fr", "gb", "jp", "us"]
DEVICES = ["desktop", "mobile", "tablet"]
CATEGORIES = ["books", "electronics", "fashion", "games", "home", "sports"]
HOURS = list(range(24))
SEGMENTS = ["low", "medium", "high"]
SEED = 20240501
EMBEDDING_DIM = 4


def build(out_dir: str) -> str:
    """Build, weight and export the model to ``out_dir``; returns the folder."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mly.logs.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # no CUDA-probe lines on a machine without a GPU
    import keras

    def embedded(name: str, dtype: str, lookup: Any, size: int) -> tuple[Any, Any]:
        inp = keras.Input(shape=(1,), dtype=dtype, name=name)
        ids = lookup(inp)
        # size + 1: index 0 is the out-of-vocabulary bucket.
        vec = keras.layers.Embedding(size + 1, EMBEDDING_DIM, name=f"{name}_embedding")(ids)
        return inp, keras.layers.Flatten(name=f"{name}_flat")(vec)

    # Layer names follow Go's `<input>_...` convention (harmless here, useful if
    # someone rebuilds this with Keras 2); mly finds the tables by the graph.
    country, country_vec = embedded(
        "country", "string", keras.layers.StringLookup(vocabulary=COUNTRIES, name="country_string_lookup"), len(COUNTRIES)
    )
    device, device_vec = embedded(
        "device", "string", keras.layers.StringLookup(vocabulary=DEVICES, name="device_string_lookup"), len(DEVICES)
    )
    category, category_vec = embedded(
        "category",
        "string",
        keras.layers.StringLookup(vocabulary=CATEGORIES, name="category_string_lookup"),
        len(CATEGORIES),
    )
    hour, hour_vec = embedded(
        "hour", "int64", keras.layers.IntegerLookup(vocabulary=HOURS, name="hour_integer_lookup"), len(HOURS)
    )
    price = keras.Input(shape=(1,), dtype="float32", name="price")
    log_price = keras.ops.log1p(keras.ops.maximum(price, 0.0))

    features = keras.layers.Concatenate(name="features")([country_vec, device_vec, category_vec, hour_vec, log_price])
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(features)
    ctr = keras.layers.Dense(1, activation="sigmoid", name="ctr")(hidden)
    logits = keras.layers.Dense(len(SEGMENTS), name="segment_logits")(hidden)
    # argmax + 1 because index 0 of an inverted lookup is the OOV token.
    segment_ids = keras.ops.cast(keras.ops.expand_dims(keras.ops.argmax(logits, axis=-1), -1) + 1, "int64")
    segment = keras.layers.StringLookup(vocabulary=SEGMENTS, invert=True, name="segment_names")(segment_ids)

    model = keras.Model(
        inputs={"country": country, "device": device, "category": category, "hour": hour, "price": price},
        outputs={"ctr": ctr, "segment": segment},
        name="ctr_example",
    )
    rng = np.random.default_rng(SEED)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights and isinstance(layer, (keras.layers.Dense, keras.layers.Embedding)):
            layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype(np.float32) for w in weights])

    target = Path(out_dir)
    if target.exists() and any(target.iterdir()):
        if not (target / "saved_model.pb").is_file():
            raise SystemExit(f"{target} exists and is not a SavedModel; refusing to overwrite it")
        shutil.rmtree(target)  # a previous build: start clean so no stale file survives
    model.export(str(target), format="tf_saved_model", verbose=False)
    return str(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output_dir", nargs="?", default=str(Path(__file__).resolve().parent / "model"), help="where to write the model"
    )
    args = parser.parse_args(argv)
    path = build(args.output_dir)
    print(f"wrote the example model to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
