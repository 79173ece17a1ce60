"""Lint and type checks run with the tests, so CI keeps the code as clean as it is now."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff() -> None:
    pytest.importorskip("ruff", reason="pip install 'mly[dev]'")
    done = run("ruff", "check", "mly", "tests", "bench", "examples")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy() -> None:
    pytest.importorskip("mypy", reason="pip install 'mly[dev]'")
    done = run("mypy", "mly")
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_stray_build_products_are_tracked() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "mly/_native"], cwd=ROOT, capture_output=True, text=True).stdout
    assert not [f for f in tracked.split() if f.endswith((".c", ".so", ".html"))]
