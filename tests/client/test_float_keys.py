"""A client keys and sends the same float: a np.float32 given for a float64 Wildcard input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from live_server import LiveServer


def build_threshold_model(out_dir: str) -> str:
    """``y = 1.0 if x > 0.1 else 0.0`` on a float64 ``x``: float32(0.1) widened is above 0.1."""
    import tensorflow as tf

    class Threshold(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float64, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": tf.cast(x > 0.1, tf.float32)}

    module = Threshold()
    tf.saved_model.save(module, out_dir, signatures={"serving_default": module.serve})
    return out_dir


@pytest.fixture(scope="module")
def threshold_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    model = build_threshold_model(str(tmp_path_factory.mktemp("threshold") / "model"))
    config = {"Models": [{"ID": "t", "URL": model, "DataStore": "m", "Inputs": [{"Name": "x", "Wildcard": True}]}],
              "Datastores": [{"ID": "m", "Cache": {"SizeMb": 1}}]}
    server = LiveServer(config, tmp_path_factory.mktemp("threshold-server")).start()
    yield server
    server.stop()


def test_a_float32_value_is_evaluated_as_the_value_it_is_keyed_by(threshold_server: LiveServer) -> None:
    from mly.client import Client

    widened = float(np.float32(0.1))  # 0.10000000149011612 > 0.1
    with Client("t", threshold_server.url.removeprefix("http://")) as client:
        first = client.predict({"x": np.float32(0.1)})
        assert first.data == {"y": 1.0}  # the server evaluated the widened value the client keyed
        again = client.predict({"x": widened})
        assert again.status == "cached" and again.data == {"y": 1.0}
        exact = client.predict({"x": 0.1})
        assert exact.status == "ok" and exact.data == {"y": 0.0}  # another value, another key
