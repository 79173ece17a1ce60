"""Load a SavedModel folder, failing early with a reason a person can act on.

TensorFlow's own errors for a wrong folder are long and generic; the checks
here turn the common mistakes (wrong path, a folder that is not a SavedModel,
a model exported without a serving signature) into one-line ``ValueError``s.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any

__all__ = ["SERVING_KEY", "load_saved_model", "saved_model_source"]

SERVING_KEY = "serving_default"

# Where each loaded object came from. ``vocab`` needs the folder only for
# Go-convention export ops that live outside the serving function (the
# MetaGraph's top level); a weak map keeps the loaded object's API unchanged
# and lets a reloaded model's old object be collected.
_SOURCES: weakref.WeakKeyDictionary[Any, tuple[str, tuple[str, ...]]] = weakref.WeakKeyDictionary()


def load_saved_model(path: str, tags: Sequence[str] = ("serve",)) -> Any:
    """Load ``path`` with ``tf.saved_model.load`` after checking it is a servable SavedModel."""
    if not os.path.isdir(path):
        raise ValueError(f"model folder {path!r} does not exist or is not a folder")
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
        raise ValueError(f"model folder {path!r} is not a SavedModel: it has no saved_model.pb")

    import tensorflow as tf

    tag_list = list(tags)
    try:
        loaded = tf.saved_model.load(path, tags=tag_list or None)
    except (RuntimeError, ValueError, OSError, tf.errors.OpError) as exc:
        # A tag set absent from the model is the usual cause; say which were asked for.
        raise ValueError(f"cannot load SavedModel {path!r} with tags {tag_list}: {exc}") from exc
    signatures = getattr(loaded, "signatures", None)
    if signatures is None or SERVING_KEY not in signatures:
        available = sorted(signatures.keys()) if signatures is not None else []
        raise ValueError(
            f"SavedModel {path!r} has no {SERVING_KEY!r} signature "
            f"(signatures: {', '.join(available) or 'none'})"
        )
    try:
        _SOURCES[loaded] = (os.path.abspath(path), tuple(tag_list))
    except TypeError:  # pragma: no cover - an object without weakref support
        pass
    return loaded


def saved_model_source(loaded: Any) -> tuple[str, tuple[str, ...]] | None:
    """The ``(folder, tags)`` ``loaded`` was read from, if it came through ``load_saved_model``."""
    try:
        return _SOURCES.get(loaded)
    except TypeError:  # pragma: no cover
        return None
