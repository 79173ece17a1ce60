"""A real mly server on loopback, in a background thread, for end-to-end tests."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import uvloop
import yaml
from redis_server import free_port

from mly.config import load_config
from mly.server import build_app

#: Endpoint.BufferSize of the shared test server, small so the 413 path is cheap to reach.
BUFFER_SIZE = 16384


class LiveServer:
    """Serves a config (written to ``workdir/config.yaml``) until ``stop()``."""

    def __init__(self, config: dict[str, Any], workdir: Path, *, protocol: str = "mly") -> None:
        """``protocol="mly"`` serves the way ``mly-fast serve`` does (HTTP/1.1, HTTP/2, TLS from the config);
        ``"httptools"`` is uvicorn's plain HTTP/1.1."""
        self.path = workdir / "config.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.config = load_config(self.path)
        self.app = build_app(self.config)
        self.port = free_port()
        scheme = "https" if protocol == "mly" and self.config.tls.cert_file else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        uv_config: uvicorn.Config
        if protocol == "mly":
            from mly.http.protocol import MlyUvicornConfig
            from mly.server import uvicorn_options

            uv_config = MlyUvicornConfig(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                         lifespan="on", **uvicorn_options(self.config))
        else:
            uv_config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, loop="uvloop", http="httptools",
                                       log_level="warning", lifespan="on")
        self._server = uvicorn.Server(uv_config)
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="mly-live-server", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._server.serve())

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    @property
    def registry(self) -> Any:
        return self.app.state.registry

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
