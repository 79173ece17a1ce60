"""Fixtures of the client tests: real servers on loopback that count what they are asked.

``CountingServer`` is the shared ``LiveServer`` with a small ASGI wrapper in front
of the app that counts eval and meta requests and keeps the eval bodies, so a
test can prove that a prediction was answered without any request, or see
exactly which rows were sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import LiveServer

MODEL = "k"


class RequestCounter:
    """ASGI wrapper: counts requests per kind and records eval bodies."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.evals = 0
        self.meta = 0
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if "/meta/" in path:
            self.meta += 1
        if not path.endswith("/eval"):
            await self.app(scope, receive, send)
            return
        self.evals += 1
        chunks: list[bytes] = []

        async def recording() -> Any:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.bodies.append(b"".join(chunks))
            return message

        await self.app(scope, recording, send)


class CountingServer(LiveServer):
    """A ``LiveServer`` (optionally on a given port, to restart it) behind a ``RequestCounter``."""

    def __init__(self, config: dict[str, Any], workdir: Path, *, port: int | None = None) -> None:
        super().__init__(config, workdir)
        if port is not None:
            self.port = port
            self.url = f"http://127.0.0.1:{port}"
            self._server.config.port = port
        self.counter = RequestCounter(self.app)
        self._server.config.app = self.counter

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def evaluated(self, model: str = MODEL) -> int:
        return int(self.registry.get(model).rows_evaluated)


def client_models(model_dirs: dict[str, str]) -> dict[str, Any]:
    """``k``: the keras lookup model (sa, sl, i1, fl keyed to 2 decimals) with a memory tier;
    ``nocache``: the same model without a datastore."""
    return {
        "Models": [
            {"ID": MODEL, "URL": model_dirs["keras"], "DataStore": "mem",
             "Inputs": [{"Name": "fl", "Precision": 2}]},
            {"ID": "nocache", "URL": model_dirs["keras"], "Inputs": [{"Name": "fl", "Precision": 2}]},
        ],
        "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 8}}],
    }


@pytest.fixture(scope="session")
def counting_server() -> type[CountingServer]:
    """The class, for modules that start servers of their own (test modules cannot import conftest)."""
    return CountingServer


@pytest.fixture(scope="session")
def client_model_config(model_dirs: dict[str, str]) -> dict[str, Any]:
    return client_models(model_dirs)


@pytest.fixture(scope="session")
def cserver(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[CountingServer]:
    config = {"Endpoint": {"BufferSize": 16384, "MaxBatchSize": 64}, **client_models(model_dirs)}
    live = CountingServer(config, tmp_path_factory.mktemp("client-server")).start()
    yield live
    live.stop()
