"""Load one configured model: files -> SavedModel -> interface, dictionary, runner.

Everything a request needs from TensorFlow is resolved here once, so a load
either yields a complete, warmed-up ``LoadedModel`` or fails with a message
that names the model and the cause; nothing half-loaded is ever served.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from mly.common.dictionary import Dictionary
from mly.config.schema import ModelConfig
from mly.errors import ModelLoadError
from mly.model.interface import InterfaceError, ModelInterface, reconcile
from mly.model.source import FileSnapshot, ModelSource

log = logging.getLogger("mly.model")

__all__ = ["LoadedModel", "ModelChangedError", "load_model"]


@dataclass(frozen=True)
class LoadedModel:
    model_id: str
    path: str
    interface: ModelInterface
    dictionary: Dictionary | None
    runner: object
    """``mly.model.runner.ModelRunner``: ``run(feeds) -> outputs``, safe from worker threads."""
    snapshot: FileSnapshot
    loaded_at: float


class ModelChangedError(ValueError):
    """The files changed while they were being loaded; the next poll tries again."""


WARM_UP_ROWS = (1, 2)
"""Row counts of the calls made at load: TensorFlow's first call of more than one row costs about
30 ms more than later ones (measured on the example model), once per loaded model; without a
2-row call here the first batch after a start or a reload paid it, with every request in it."""


def _warm_up(runner: object, interface: ModelInterface, model_id: str) -> None:
    """Tiny calls so the first real requests do not pay for TF's tracing and first batch.

    The 1-row call must succeed (a model that cannot evaluate a row is not loaded); the
    larger ones are best effort, since a model whose signature fixes one row per call (its
    batches fail at request time, with the error) still serves single rows."""
    zero = {"string": "", "bool": False}
    for rows in WARM_UP_ROWS:
        feeds = {}
        for name in interface.fed:
            dtype = interface.dtypes[name]
            value = zero.get(dtype, 0)
            feeds[name] = np.array([value] * rows, dtype=object if dtype == "string" else dtype)
        try:
            runner.run(feeds)  # type: ignore[attr-defined]
        except Exception as exc:
            if rows == 1:
                raise
            log.debug("model %s: no %d-row warm-up: %s", model_id, rows, exc)


def load_model(config: ModelConfig, *, caching: bool, source: ModelSource | None = None) -> LoadedModel:
    """Load, reconcile, extract the dictionary and warm up; ``ModelLoadError`` on any problem.

    The file listing is taken before and after loading: a model whose files
    changed in between (a copy still in progress) is refused with
    ``ModelChangedError`` rather than served half old, half new.
    """
    source = source or ModelSource(config.url, model_id=config.id, location=config.location)
    from mly.model.runner import ModelRunner
    from mly.model.saved_model import load_saved_model
    from mly.model.signature import read_signature
    from mly.model.vocab import extract_vocabularies

    try:
        snapshot = source.snapshot()
        path = source.materialize(snapshot)
        loaded = load_saved_model(path, tuple(config.tags))
        signature = read_signature(loaded)
        interface = reconcile(
            config,
            [(t.name, t.dtype) for t in signature.inputs],
            [(t.name, t.dtype) for t in signature.outputs],
            caching=caching,
        )
        dictionary = None
        if config.use_dict:
            layers = extract_vocabularies(loaded, interface.vocabulary_inputs)
            interface = interface.keyed_raw([name for name, layer in layers.items() if layer is None])
            ordered = [layer for layer in layers.values() if layer is not None]
            dictionary = Dictionary.build(ordered, file_hash=snapshot.file_hash)
        runner = ModelRunner(loaded, signature)
        _warm_up(runner, interface, config.id)
        if source.snapshot() != snapshot:
            raise ModelChangedError("the model's files changed while it was loading")
    except ModelChangedError as exc:
        raise ModelLoadError(config.id, str(exc)) from exc
    except ModelLoadError:
        raise
    except (InterfaceError, LookupError, ValueError, OSError) as exc:  # FileNotFoundError included
        raise ModelLoadError(config.id, str(exc)) from exc
    except Exception as exc:  # TensorFlow raises many types; all mean "not loadable"
        raise ModelLoadError(config.id, f"{type(exc).__name__}: {exc}") from exc
    return LoadedModel(config.id, path, interface, dictionary, runner, snapshot, time.time())
