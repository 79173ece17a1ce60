"""Models for the ``mly.model`` tests, built once per session (a few seconds in all)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `model_builders` lives in tests/; make it importable however pytest was started.
_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import model_builders  # noqa: E402


@pytest.fixture(scope="session")
def model_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mly_model_tests")
    builders = {
        "keras": model_builders.build_keras_lookup_model,
        "changed": model_builders.build_changed_vocab_model,
        "export_op": model_builders.build_export_op_model,
        "legacy": model_builders.build_legacy_export_model,
        "numeric": model_builders.build_numeric_model,
        "int_tables": model_builders.build_int_tables_model,
    }
    return {name: build(str(root / name)) for name, build in builders.items()}


@pytest.fixture(scope="session")
def built_model(model_paths: dict[str, str]) -> Any:
    """``built_model(name)`` -> that model, loaded once: loading is the slow part of most tests."""
    from mly.model.saved_model import load_saved_model

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = load_saved_model(model_paths[name])
        return cache[name]

    return get
