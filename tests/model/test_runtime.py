"""TensorFlow thread settings: defaults, TF's own defaults on request, bad values refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mly.config import parse_config
from mly.errors import ConfigError
from mly.model.runtime import thread_counts


def endpoint(**fields: int):  # type: ignore[no-untyped-def]
    return parse_config({"Models": [{"ID": "m", "URL": "/m"}], "Endpoint": fields}).endpoint


def test_thread_counts() -> None:
    assert thread_counts(endpoint()) == (1, 1)
    assert thread_counts(endpoint(TFIntraOpThreads=-1, TFInterOpThreads=4)) == (0, 4)


@pytest.mark.parametrize("key", ["TFIntraOpThreads", "TFInterOpThreads", "InferenceThreads"])
def test_bad_thread_counts_name_the_key(key: str) -> None:
    with pytest.raises(ConfigError, match=f"Endpoint.{key}: must be >="):
        endpoint(**{key: -2})


def test_configure_tensorflow_in_a_fresh_process() -> None:
    code = (
        "from mly.config import parse_config; from mly.model.runtime import configure_tensorflow;"
        "import tensorflow as tf;"
        "ep = parse_config({'Models': [{'ID': 'm', 'URL': '/m'}], 'Endpoint': {'TFInterOpThreads': 2}}).endpoint;"
        "assert configure_tensorflow(ep);"
        "print(tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "2"]
