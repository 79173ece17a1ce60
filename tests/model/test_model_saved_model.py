"""load_saved_model: a clear ValueError for every way a folder can fail to be a servable model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mly.model.saved_model import load_saved_model, saved_model_source


def test_loads_and_remembers_source(model_paths: dict[str, str]) -> None:
    loaded = load_saved_model(model_paths["keras"])
    assert "serving_default" in loaded.signatures
    assert saved_model_source(loaded) == (str(Path(model_paths["keras"]).resolve()), ("serve",))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_saved_model(str(tmp_path / "nope"))


def test_folder_without_saved_model_pb(tmp_path: Path) -> None:
    (tmp_path / "variables").mkdir()
    (tmp_path / "model.h5").write_bytes(b"not a saved model")
    with pytest.raises(ValueError, match=r"not a SavedModel: it has no saved_model\.pb"):
        load_saved_model(str(tmp_path))


def test_corrupt_saved_model_pb(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="cannot load SavedModel"):
        load_saved_model(str(tmp_path))


def test_unknown_tags(model_paths: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"tags \['gpu'\]"):
        load_saved_model(model_paths["numeric"], tags=("gpu",))


def test_no_serving_default(tmp_path: Path) -> None:
    import tensorflow as tf

    module: Any = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path))
    with pytest.raises(ValueError, match="no 'serving_default' signature"):
        load_saved_model(str(tmp_path))
