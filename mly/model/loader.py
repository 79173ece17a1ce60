"""Load one configured model: files -> SavedModel -> interface, dictionary, runner.

Everything a request needs from TensorFlow is resolved here once, so a load
either yields a complete, warmed-up ``LoadedModel`` or fails with a message
that names the model and the cause; nothing half-loaded is ever served.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mly.common.dictionary import Dictionary
from mly.config.schema import ModelConfig
from mly.errors import ModelLoadError
from mly.model.interface import InterfaceError, ModelInterface, reconcile

__all__ = ["FileSnapshot", "LoadedModel", "load_model", "local_model_path", "snapshot_files"]


@dataclass(frozen=True, slots=True)
class FileSnapshot:
    """The model folder's files, to tell whether anything changed (decisions.md #10)."""

    files: tuple[tuple[str, int, int], ...]
    """``(relative path, size, mtime_ns)`` sorted by path."""

    @property
    def min_mtime(self) -> float:
        return min((f[2] for f in self.files), default=0) / 1e9

    @property
    def max_mtime(self) -> float:
        return max((f[2] for f in self.files), default=0) / 1e9

    @property
    def file_hash(self) -> int:
        """Go's fsHash: oldest + newest mtime in whole seconds."""
        return int(self.min_mtime) + int(self.max_mtime)


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


def local_model_path(url: str) -> str:
    """A local folder for ``url``; object stores are not supported yet."""
    if url.startswith("file://"):
        return url[len("file://") :]
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"URL scheme {scheme}:// is not supported yet (use a local path or file://)")
    return url


def snapshot_files(path: str) -> FileSnapshot:
    root = Path(path)
    entries = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = Path(dirpath) / name
            st = full.stat()
            entries.append((str(full.relative_to(root)), st.st_size, st.st_mtime_ns))
    return FileSnapshot(tuple(sorted(entries)))


def _warm_up(runner: object, interface: ModelInterface) -> None:
    """One tiny call so the first real request does not pay for TF's tracing."""
    zero = {"string": "", "bool": False}
    feeds = {}
    for name in interface.fed:
        dtype = interface.dtypes[name]
        value = zero.get(dtype, 0)
        feeds[name] = np.array([value], dtype=object if dtype == "string" else dtype)
    runner.run(feeds)  # type: ignore[attr-defined]


def load_model(config: ModelConfig, *, caching: bool) -> LoadedModel:
    """Load, reconcile, extract the dictionary and warm up; ``ModelLoadError`` on any problem."""
    from mly.model.runner import ModelRunner
    from mly.model.saved_model import load_saved_model
    from mly.model.signature import read_signature
    from mly.model.vocab import extract_vocabularies

    try:
        path = local_model_path(config.url)
        if not os.path.isdir(path):
            raise ValueError(f"model folder {path} does not exist")
        snapshot = snapshot_files(path)
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
            ordered = [layers[name] for name in interface.vocabulary_inputs]
            dictionary = Dictionary.build(ordered, file_hash=snapshot.file_hash)
        runner = ModelRunner(loaded, signature)
        _warm_up(runner, interface)
    except ModelLoadError:
        raise
    except (InterfaceError, LookupError, ValueError, OSError) as exc:
        raise ModelLoadError(config.id, str(exc)) from exc
    except Exception as exc:  # TensorFlow raises many types; all mean "not loadable"
        raise ModelLoadError(config.id, f"{type(exc).__name__}: {exc}") from exc
    return LoadedModel(config.id, path, interface, dictionary, runner, snapshot, time.time())
