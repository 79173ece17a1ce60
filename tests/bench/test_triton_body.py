"""The Triton baseline's request bodies feed the benchmark model what mly's bodies feed it.

``bench/triton_server.py`` runs in its own virtualenv (PyTriton needs numpy<2); its body
builder does not, so it is checked here against the real benchmark SavedModel: a KServe
v2 body, decoded by its declared datatypes as Triton decodes it, must give the same
``ctr`` as the naive reference app gives for the same rows in mly's wire format.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    sys.path.insert(0, str(BENCH))
    try:
        import apps
        import corpus
        import ctr_model
        import triton_server

        yield {"apps": apps, "corpus": corpus, "ctr_model": ctr_model, "triton_server": triton_server}
    finally:
        sys.path.remove(str(BENCH))


def test_a_v2_body_is_one_line_of_named_columns(bench: dict[str, ModuleType]) -> None:
    corpus, ctr_model, ts = bench["corpus"], bench["ctr_model"], bench["triton_server"]
    rows = corpus.Corpus(corpus.ctr_fields(), oov=0.5, seed=3).rows(5)
    body = ts.v2_body(rows)
    assert b"\n" not in body
    inputs = json.loads(body)["inputs"]
    assert [i["name"] for i in inputs] == [*ctr_model.VOCABULARIES, ctr_model.FLOAT_INPUT]
    kinds = {str: "BYTES", int: "INT64", float: "FP32"}
    for item in inputs:
        assert item["shape"] == [5, 1]
        assert item["data"] == [r[item["name"]] for r in rows]
        assert {kinds[type(v)] for v in item["data"]} == {item["datatype"]}
    with pytest.raises(ValueError):
        ts.v2_body([])


def test_v2_bodies_give_the_reference_apps_predictions(bench: dict[str, ModuleType], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    corpus, ts = bench["corpus"], bench["triton_server"]
    model_dir = bench["ctr_model"].build(str(tmp_path / "ctr"))
    monkeypatch.setenv(bench["apps"].MODEL_ENV, model_dir)
    reference = bench["apps"]._predictor()
    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    _, specs = fn.structured_input_signature
    numpy_types: dict[str, Any] = {"BYTES": object, "INT64": np.int64, "FP32": np.float32}

    def triton_decoded(body: bytes) -> list[float]:
        feeds = {}
        for item in json.loads(body)["inputs"]:
            data = [v.encode() for v in item["data"]] if item["datatype"] == "BYTES" else item["data"]
            array = np.asarray(data, dtype=numpy_types[item["datatype"]]).reshape(item["shape"])
            spec = specs[item["name"]]
            assert spec.dtype == (tf.string if array.dtype == object else tf.as_dtype(array.dtype)), item["name"]
            feeds[item["name"]] = tf.constant(array, dtype=spec.dtype)
        return [float(x) for x in fn(**feeds)[ts.OUTPUT].numpy().reshape(-1)]

    rows = corpus.Corpus(corpus.ctr_fields(), seed=7).rows(32)  # 5% out of vocabulary, as the benchmark draws
    expected = [r["ctr"] for r in json.loads(reference(json.loads(corpus.batch_body(rows))))["data"]]
    assert triton_decoded(ts.v2_body(rows)) == pytest.approx(expected, abs=1e-6)
    single = json.loads(reference(json.loads(corpus.single_body(rows[0]))))["data"]["ctr"]
    assert triton_decoded(ts.v2_body(rows[:1])) == pytest.approx([single], abs=1e-6)
