"""One TensorFlow call: 1-D numpy columns in, numpy outputs out.

The runner is the whole hot path into TensorFlow, so everything that can be
decided once (feed order, dtypes, target shapes, which outputs are strings)
is decided in ``__init__``; ``run`` only reshapes, converts and calls.

It calls the restored ``serving_default`` function's inference function with
flat tensors in signature order plus the captured resources. That skips the
keyword-argument binding and structure checks of the public call (about 60 us
of a ~170 us call for a tiny model) and the wrappers in between: distribution
strategy handles (a served model has none), gradient tapes and graph building
(never active in the inference threads), about 20-40 us more per call. Tensors
are made as ``tf.constant`` makes them on its eager path (``EagerTensor`` of
the array, without its defensive copy: the runner owns its arrays), about 2 us
less per column. If a TensorFlow version changes these private parts, the
runner falls back to the public ones once and for all.

TensorFlow's eager runtime is thread-safe, and the runner keeps no per-call
state, so ``run`` may be called from many worker threads at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mly.errors import EvaluationError
from mly.model.saved_model import SERVING_KEY
from mly.model.signature import Signature, TensorInfo

__all__ = ["ModelRunner"]

_NUMPY_DTYPES: dict[str, Any] = {
    "string": object,
    "int64": np.int64,
    "int32": np.int32,
    "float32": np.float32,
    "float64": np.float64,
    "bool": np.bool_,
}


class _Feed:
    """How one signature input is turned from a 1-D column into a tensor."""

    __slots__ = ("dtype", "name", "np_dtype", "rank", "tail", "tf_dtype")

    def __init__(self, info: TensorInfo, tf_dtype: Any) -> None:
        self.name = info.name
        self.dtype = info.dtype
        self.np_dtype = _NUMPY_DTYPES[info.dtype]
        self.tf_dtype = tf_dtype
        self.rank = len(info.shape)
        # Rows go in the first dim; unknown trailing dims take 1 (a [rows, 1] column).
        self.tail = tuple(1 if d is None else d for d in info.shape[1:])


class ModelRunner:
    """Evaluate a loaded SavedModel's ``serving_default`` on columns of values."""

    def __init__(self, loaded: Any, signature: Signature) -> None:
        import tensorflow as tf

        self._tf = tf
        self._function = loaded.signatures[SERVING_KEY]
        self.signature = signature
        # Flat call order = the signature's keyword specs sorted by key.
        _, kwargs = self._function.structured_input_signature
        order = sorted(kwargs)
        by_name = {t.name: t for t in signature.inputs}
        if set(order) != set(by_name):
            raise ValueError(f"signature inputs {sorted(by_name)} do not match the model's {order}")
        self._feeds = tuple(_Feed(by_name[n], tf.dtypes.as_dtype(kwargs[n].dtype)) for n in order)
        self._captures = list(self._function.captured_inputs)
        inference = getattr(self._function, "_inference_function", None)
        self._call_flat = getattr(inference, "call_preflattened", None)
        self._eager = _eager_tensor_maker(tf)
        self._outputs = tuple(t.name for t in signature.outputs)
        self._string_outputs = frozenset(t.name for t in signature.outputs if t.dtype == "string")

    def _tensor(self, feed: _Feed, values: Any) -> Any:
        array = np.asarray(values, dtype=feed.np_dtype)
        if array.ndim != feed.rank:
            if feed.rank == 0:
                if array.size != 1:
                    raise ValueError(f"input {feed.name!r} is a scalar; got {array.size} rows")
                array = array.reshape(())
            else:
                rows = array.shape[0] if array.ndim else 1
                try:
                    array = array.reshape((rows, *feed.tail))
                except ValueError:
                    raise ValueError(
                        f"input {feed.name!r}: cannot shape {array.shape} to [rows, {', '.join(map(str, feed.tail))}]"
                    ) from None
        if self._eager is not None:
            try:
                return self._eager(array, feed.tf_dtype)
            except TypeError:
                # Either this TF version changed the private parts or the value is bad; tf.constant
                # raises for a bad value too, so only a success here turns the direct path off.
                tensor = self._tf.constant(array, dtype=feed.tf_dtype)
                self._eager = None
                return tensor
        # tf.constant takes the eager fast path: ~5 us a column, against ~9 us for convert_to_tensor.
        return self._tf.constant(array, dtype=feed.tf_dtype)

    def _call(self, tensors: list[Any]) -> Any:
        if self._call_flat is not None:
            try:
                return self._call_flat(tensors + self._captures)
            except TypeError:
                # The private method changed shape in this TF version: use the public call from now on.
                self._call_flat = None
        return self._function(**{feed.name: t for feed, t in zip(self._feeds, tensors)})

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Evaluate one batch; every feed is a 1-D column (strings as object arrays of ``str``).

        Returns every output by name (sorted), string outputs as object arrays of ``str``.
        """
        try:
            tensors = [self._tensor(feed, feeds[feed.name]) for feed in self._feeds]
        except KeyError as exc:
            raise ValueError(f"missing input {exc.args[0]!r}") from None
        try:
            result = self._call(tensors)
        except self._tf.errors.OpError as exc:
            raise EvaluationError(f"model evaluation failed: {exc.message}") from exc
        if not isinstance(result, Mapping):
            # Some TF versions hand back the flat list; its order is the sorted output keys.
            result = dict(zip(sorted(self._function.structured_outputs), result))
        out: dict[str, np.ndarray] = {}
        for name in self._outputs:
            value = result[name].numpy()
            if name in self._string_outputs:
                value = _decode(value)
            out[name] = value
        return out


def _eager_tensor_maker(tf: Any) -> Callable[[np.ndarray, Any], Any] | None:
    """``(array, dtype) -> EagerTensor`` as ``tf.constant``'s eager path builds it, or ``None``
    when this TensorFlow lacks the private parts (``tf.constant`` is then used)."""
    try:
        from tensorflow.python.eager import context
        from tensorflow.python.framework.ops import EagerTensor
    except ImportError:
        return None
    ctx = context.context()
    ctx.ensure_initialized()

    def make(array: np.ndarray, dtype: Any) -> Any:
        return EagerTensor(array, ctx.device_name, dtype.as_datatype_enum)

    return make


def _decode(values: np.ndarray) -> np.ndarray:
    """Bytes from TensorFlow -> ``str`` objects, same shape (invalid UTF-8 is replaced, never raised)."""
    flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]
    decoded = np.empty(len(flat), dtype=object)
    decoded[:] = flat
    return decoded.reshape(values.shape)
