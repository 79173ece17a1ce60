"""All served models of one server, and the pool TensorFlow runs in."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from mly.config.schema import Config
from mly.errors import NotFoundError
from mly.service.model_service import ModelService

__all__ = ["ModelRegistry"]


class ModelRegistry:
    """Model ID -> ``ModelService``; owns the inference thread pool.

    TensorFlow releases the GIL inside a call, so a small pool keeps both cores
    busy while the event loop stays free to parse and answer requests.
    """

    def __init__(self, config: Config, *, inference_threads: int | None = None) -> None:
        self.config = config
        threads = inference_threads or max(2, os.cpu_count() or 2)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mly-infer")
        self.services = {m.id: ModelService(m, config, self.executor) for m in config.models}

    def load_all(self) -> None:
        """Load every model; the first failure propagates (the server must not start)."""
        for service in self.services.values():
            service.load()

    def get(self, model_id: str) -> ModelService:
        service = self.services.get(model_id)
        if service is None:
            raise NotFoundError(f"unknown model {model_id!r} (serving: {', '.join(self.services)})")
        return service

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
