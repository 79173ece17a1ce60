"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


@pytest.fixture
def asgi_cycles(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths of requests that ran through uvicorn's ASGI cycle while the test ran."""
    seen: list[str] = []
    original = RequestResponseCycle.run_asgi

    async def counting(self: RequestResponseCycle, app: Any) -> None:
        seen.append(self.scope["path"])
        await original(self, app)

    monkeypatch.setattr(RequestResponseCycle, "run_asgi", counting)
    yield seen
