"""Process-wide TensorFlow settings, applied once before the first model loads.

Measured on a 2-core machine with the bundled example model (docs/performance.md):
TensorFlow's default thread pools made a 1-row call about 4x slower than one
intra-op and one inter-op thread, because every small call paid for waking and
synchronising pool threads. mly's parallelism comes from its own inference pool
(several calls at once) and from batching (bigger calls), so TF's pools stay small.
"""

from __future__ import annotations

import logging

from mly.config.schema import EndpointConfig

__all__ = ["configure_tensorflow", "thread_counts"]

log = logging.getLogger("mly.model")


def thread_counts(endpoint: EndpointConfig) -> tuple[int, int]:
    """(intra, inter) to set; 0 in the result means "leave TensorFlow's default"."""

    def resolve(value: int) -> int:
        return 1 if value == 0 else (0 if value < 0 else value)

    return resolve(endpoint.tf_intra_op_threads), resolve(endpoint.tf_inter_op_threads)


def configure_tensorflow(endpoint: EndpointConfig) -> bool:
    """Apply the thread settings; False (with a warning) if TensorFlow already started."""
    import tensorflow as tf

    intra, inter = thread_counts(endpoint)
    try:
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError as exc:
        current = (tf.config.threading.get_intra_op_parallelism_threads(),
                   tf.config.threading.get_inter_op_parallelism_threads())
        if current == (intra or current[0], inter or current[1]):
            return True
        log.warning("TensorFlow thread settings not applied (already initialised): %s", exc)
        return False
    return True
