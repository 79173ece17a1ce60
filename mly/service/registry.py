"""All served models of one server, and the pool TensorFlow runs in."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from mly.cache.factory import build_datastore
from mly.cache.tiered import TieredCache
from mly.config.schema import Config
from mly.errors import NotFoundError
from mly.service.model_service import ModelService

__all__ = ["ModelRegistry"]


def _usable_cpus() -> int:
    """CPUs this process may run on (taskset, cgroup cpusets), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class ModelRegistry:
    """Model ID -> ``ModelService``; owns the inference thread pool.

    TensorFlow releases the GIL inside a call, so a small pool keeps both cores
    busy while the event loop stays free to parse and answer requests.
    """

    def __init__(self, config: Config, *, inference_threads: int | None = None) -> None:
        self.config = config
        threads = inference_threads or _usable_cpus()
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mly-infer")
        # One cache per datastore, shared by the models that name it (as Go does).
        self.caches: dict[str, TieredCache] = {
            ds.id: build_datastore(ds, config)
            for ds in config.datastores
            if any(m.datastore == ds.id and m.use_dict for m in config.models)
        }
        self.services = {
            m.id: ModelService(
                m, config, self.executor, cache=self.caches.get(m.datastore), pool_threads=threads
            )
            for m in config.models
        }

    def load_all(self) -> None:
        """Load every model; the first failure propagates (the server must not start)."""
        for service in self.services.values():
            service.load()

    def get(self, model_id: str) -> ModelService:
        service = self.services.get(model_id)
        if service is None:
            raise NotFoundError(f"unknown model {model_id!r} (serving: {', '.join(self.services)})")
        return service

    async def aclose(self) -> None:
        """Flush the caches' write-behind queues, then stop the inference pool."""
        for cache in self.caches.values():
            await cache.aclose()
        self.close()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        for service in self.services.values():
            service.close_logs()
            service.source.close()  # the copies of a remote model belong to this process alone
