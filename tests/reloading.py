"""Helpers for tests that swap a model's version under a running server."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def point(link: Path, target: Path) -> None:
    """Atomically repoint ``link`` at ``target``: the server sees one version or the other."""
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, link)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
