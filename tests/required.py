"""What a test does when a tool or service it needs is not on this machine."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["missing"]


def missing(message: str) -> NoReturn:
    """Skip, except under CI (``CI`` set): ``.ci/run`` installs every tool and service the tests
    need, so there a skip would hide a broken set-up, and the test fails instead."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
