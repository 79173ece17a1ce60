"""The code the Python client will share (keys, dictionaries, caches, config) stays free of
TensorFlow and Starlette, so `pip install mly` never needs them (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SHARED = ["mly", "mly.errors", "mly._native", "mly.config", "mly.common.keys", "mly.common.meta",
          "mly.common.dictionary", "mly.cache", "mly.cache.tiered", "mly.cache.factory", "mly.cache.redis",
          "mly.batching"]


@pytest.mark.parametrize("module", SHARED)
def test_shared_modules_import_no_server_stack(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'starlette', 'uvicorn') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{module} pulls in {done.stdout.strip()}"
