"""Imported with ``--import`` by tests/e2e/test_workers.py: a start-up fault no config can cause.

In a ``--workers`` process only (the supervisor sets ``MLY_STARTUP_ERROR_FILE`` for them), the
app's start-up (the ASGI lifespan) fails with an error nothing in mly reports, which uvicorn answers
by exiting with status 3 on its own. A test double, since a real such failure cannot be arranged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from mly.http.prometheus import PrometheusExporter
from mly.service.selftest import STARTUP_ERROR_FILE_ENV


@contextlib.asynccontextmanager
async def _failing(self: PrometheusExporter) -> AsyncIterator[None]:
    raise RuntimeError("injected start-up fault")
    yield  # pragma: no cover - an async generator, for asynccontextmanager


if os.environ.get(STARTUP_ERROR_FILE_ENV):
    PrometheusExporter.running = _failing  # type: ignore[method-assign]
