"""Build the benchmark model: a CTR-like SavedModel shaped like real ad-ranking traffic.

Usage: ``python bench/ctr_model.py OUTPUT_DIR``. The bundled example (5 small inputs)
is too kind to a cache benchmark: its whole key space fits in a few thousand keys and
its tables are tiny. This one has the shape the performance issues are measured on:

    site_id       string  StringLookup, 2,000 entries
    app_id        string  StringLookup, 1,000 entries
    device_model  string  StringLookup,   500 entries
    country       string  StringLookup,   200 entries
    ad_category   string  StringLookup,    50 entries
    os            string  StringLookup,    10 entries
    creative_id   int64   IntegerLookup, 5,000 entries
    bid           float32 used numerically (keyed with Precision 2)

Each lookup feeds a 16-wide embedding; a 256-64-1 dense tower gives ``ctr``: about 186k
parameters. ``--hidden`` widens the tower: ``bench/run.py`` builds a slow variant whose
one-row evaluation costs about a millisecond, the model cost a client-side cache is sold on.
Weights come from a fixed seed, so every build gives the same predictions and the same
dictionary hash. The vocabularies are importable (``VOCABULARIES``) so a
corpus can be generated without a running server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20261202
EMBEDDING_DIM = 16
MODEL_ID = "ctr"
HIDDEN = (256, 64)
"""Widths of the dense tower's hidden layers (the published benchmark model)."""

#: input name -> vocabulary (strings, or ints for creative_id); order = the model's input order.
VOCABULARIES: dict[str, list[str] | list[int]] = {
    "site_id": [f"site{i:04d}" for i in range(2000)],
    "app_id": [f"app{i:04d}" for i in range(1000)],
    "device_model": [f"dm{i:03d}" for i in range(500)],
    "country": [f"c{i:03d}" for i in range(200)],
    "ad_category": [f"cat{i:02d}" for i in range(50)],
    "os": [f"os{i}" for i in range(10)],
    "creative_id": list(range(100_000, 105_000)),
}
FLOAT_INPUT, FLOAT_PRECISION = "bid", 2


def mly_model_config(model_dir: str, *, cache: bool, datastore: str = "ctrCache") -> dict[str, Any]:
    """The ``Models`` entry that serves this model with keys for every input."""
    model: dict[str, Any] = {"ID": MODEL_ID, "URL": model_dir,
                             "Inputs": [{"Name": FLOAT_INPUT, "Precision": FLOAT_PRECISION}]}
    if cache:
        model["DataStore"] = datastore
    return model


def build(out_dir: str, hidden: tuple[int, ...] = HIDDEN) -> str:
    """Build, weight and export the model to ``out_dir``; returns the folder.

    ``hidden`` sets the tower's widths; the inputs, vocabularies and output stay the same,
    so every corpus and request body fits every variant.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mly.logs.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    inputs: dict[str, Any] = {}
    features: list[Any] = []
    for name, vocab in VOCABULARIES.items():
        if isinstance(vocab[0], str):
            inp = keras.Input(shape=(1,), dtype="string", name=name)
            ids = keras.layers.StringLookup(vocabulary=vocab, name=f"{name}_string_lookup")(inp)
        else:
            inp = keras.Input(shape=(1,), dtype="int64", name=name)
            ids = keras.layers.IntegerLookup(vocabulary=vocab, name=f"{name}_integer_lookup")(inp)
        vec = keras.layers.Embedding(len(vocab) + 1, EMBEDDING_DIM, name=f"{name}_embedding")(ids)
        inputs[name] = inp
        features.append(keras.layers.Flatten(name=f"{name}_flat")(vec))
    bid = keras.Input(shape=(1,), dtype="float32", name=FLOAT_INPUT)
    inputs[FLOAT_INPUT] = bid
    features.append(keras.ops.log1p(keras.ops.maximum(bid, 0.0)))

    x = keras.layers.Concatenate(name="features")(features)
    for i, width in enumerate(hidden, start=1):
        x = keras.layers.Dense(width, activation="relu", name=f"hidden{i}")(x)
    ctr = keras.layers.Dense(1, activation="sigmoid", name="ctr")(x)
    model = keras.Model(inputs=inputs, outputs={"ctr": ctr}, name="ctr_bench")
    rng = np.random.default_rng(SEED)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights and isinstance(layer, (keras.layers.Dense, keras.layers.Embedding)):
            layer.set_weights([rng.normal(0.0, 0.1, w.shape).astype(np.float32) for w in weights])

    target = Path(out_dir)
    if target.exists() and any(target.iterdir()):
        if not (target / "saved_model.pb").is_file():
            raise SystemExit(f"{target} exists and is not a SavedModel; refusing to overwrite it")
        shutil.rmtree(target)
    model.export(str(target), format="tf_saved_model", verbose=False)
    return str(target)


def parameter_count(model_dir: str) -> int:
    """Trainable + lookup-free parameters of a built model (for the benchmark's header)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    return int(sum(np.prod(v.shape) for v in loaded.variables if v.dtype.is_floating))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="where to write the model")
    parser.add_argument("--hidden", default=",".join(map(str, HIDDEN)),
                        help=f"hidden layer widths, comma-separated (default {','.join(map(str, HIDDEN))})")
    args = parser.parse_args(argv)
    hidden = tuple(int(w) for w in args.hidden.split(",") if w.strip())
    if not hidden or min(hidden) < 1:
        parser.error(f"--hidden needs positive widths, got {args.hidden!r}")
    path = build(args.output_dir, hidden)
    print(f"wrote the benchmark model to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
