"""Model sources: what counts as a change, and a version that changes while it loads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mly.config import parse_config
from mly.errors import ModelLoadError
from mly.model.loader import ModelChangedError, load_model
from mly.model.source import FileSnapshot, ModelSource


def snapshot(path: Path) -> FileSnapshot:
    return ModelSource(str(path), model_id="m").snapshot()


def test_any_file_change_is_a_change(tmp_path: Path) -> None:
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"a" * 10)
    (tmp_path / "variables" / "v.index").write_bytes(b"b")
    first = snapshot(tmp_path)
    assert [f[0] for f in first.files] == ["saved_model.pb", "variables/v.index"]
    assert snapshot(tmp_path) == first

    os.utime(tmp_path / "variables" / "v.index", (1, 1))  # an old mtime still differs (Go: span rule)
    assert snapshot(tmp_path) != first
    second = snapshot(tmp_path)
    (tmp_path / "extra").write_bytes(b"")
    assert snapshot(tmp_path) != second
    third = snapshot(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"c" * 11)
    assert snapshot(tmp_path) != third


def test_file_url_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    assert ModelSource(f"file://{tmp_path}", model_id="m").snapshot() == snapshot(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        snapshot(tmp_path / "nope")
    assert ModelSource(f"file://{tmp_path}", model_id="m").materialize(snapshot(tmp_path)) == str(tmp_path)


def test_unknown_scheme_names_the_url() -> None:
    with pytest.raises(ValueError, match="nosuch://bucket/m"):
        ModelSource("nosuch://bucket/m", model_id="m").snapshot()


def test_file_hash_is_go_fs_hash(tmp_path: Path) -> None:
    for name, mtime in (("a", 1000.7), ("b", 2000.2)):
        (tmp_path / name).write_bytes(b"")
        os.utime(tmp_path / name, (mtime, mtime))
    assert snapshot(tmp_path).file_hash == 1000 + 2000


class ChangingSource(ModelSource):
    """Test double for a race that cannot be timed reliably: the files change
    between the listing taken before loading and the one taken after."""

    calls = 0

    def snapshot(self) -> FileSnapshot:
        self.calls += 1
        first = super().snapshot()
        if self.calls == 1:
            return first
        return FileSnapshot((*first.files, ("late-file", 1, "1")), first.mtimes)


def test_version_that_changes_while_loading_is_refused(model_dirs: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dirs["ops"], folder)
    config = parse_config({"Models": [{"ID": "m", "URL": str(folder)}]}).models[0]
    with pytest.raises(ModelLoadError, match="changed while it was loading") as info:
        load_model(config, caching=False, source=ChangingSource(str(folder), model_id="m"))
    assert isinstance(info.value.__cause__, ModelChangedError)
    assert load_model(config, caching=False).interface.fed == ("ik", "sa")


def test_loading_warms_up_one_row_and_a_batch(model_dirs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorFlow's first call of more than one row is slow (about 30 ms on the example model):
    loading pays it, not the first batch of requests. Records the real runner's calls."""
    from mly.model.loader import WARM_UP_ROWS
    from mly.model.runner import ModelRunner

    rows: list[int] = []
    real_run = ModelRunner.run

    def recording_run(self: ModelRunner, feeds: dict) -> dict:  # type: ignore[type-arg]
        rows.append({len(column) for column in feeds.values()}.pop())
        return real_run(self, feeds)

    monkeypatch.setattr(ModelRunner, "run", recording_run)
    config = parse_config({"Models": [{"ID": "m", "URL": model_dirs["ops"]}]}).models[0]
    load_model(config, caching=False)
    assert tuple(rows) == WARM_UP_ROWS and max(rows) > 1


def test_a_model_that_takes_one_row_per_call_still_loads(tmp_path: Path) -> None:
    """The batch warm-up is best effort: a signature that fixes one row per call refuses it."""
    import tensorflow as tf

    class OneRow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 1], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.reshape(x, [1]) * 2.0}  # two rows cannot take this shape

    module = OneRow()
    folder = str(tmp_path / "one-row")
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    config = parse_config({"Models": [{"ID": "one", "URL": folder}]}).models[0]
    loaded = load_model(config, caching=False)
    out = loaded.runner.run({"x": np.array([1.5], dtype=np.float32)})  # type: ignore[attr-defined]
    assert float(np.asarray(out["y"]).reshape(-1)[0]) == 3.0


def test_two_copies_of_one_remote_model_never_touch_each_others_files(tmp_path: Path) -> None:
    """Two sources of one URL and ``Location`` (worker processes, or two servers on one host) each copy
    into a folder of their own: a reload of one discards none of the other's files, and ``close``
    removes only its own. fsspec's in-memory filesystem stands in for the object store."""
    import fsspec

    fs = fsspec.filesystem("memory")
    url = f"memory://{tmp_path.name}/model"
    fs.pipe({f"{url}/saved_model.pb": b"v1", f"{url}/variables/variables.index": b"i1"})
    location = str(tmp_path / "copies")
    first, second = (ModelSource(url, model_id="m", location=location) for _ in range(2))
    try:
        first_v1 = first.materialize(first.snapshot())
        second_v1 = second.materialize(second.snapshot())
        assert first_v1 != second_v1  # one shared target: a rename onto a copy already there failed

        fs.pipe(f"{url}/saved_model.pb", b"v2 is longer")
        first_v2 = first.materialize(first.snapshot())
        first.discard_except(first_v2)  # what a reload does once the new version serves
        assert not os.path.exists(first_v1)
        assert Path(second_v1, "variables", "variables.index").read_bytes() == b"i1"

        first.close()
        assert not os.path.exists(first_v2) and os.path.isdir(second_v1)
    finally:
        first.close()
        second.close()
        fs.rm(f"memory://{tmp_path.name}", recursive=True)
    assert os.listdir(location) == []  # nothing left behind at exit
