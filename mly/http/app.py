"""``create_app``: the routes of the Go mly server: eval on the fast path
(``fast.py``), everything else on Starlette.

Endpoints only translate between HTTP and the service layer; every error is
raised as an ``MlyError`` and rendered in one shape (``responses.error_body``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mly.cache.stats import cache_tier_stats
from mly.config.schema import to_json
from mly.http.fast import EvalFastPath
from mly.http.guard import AllowedSubnetMiddleware
from mly.http.metrics import metric_routes
from mly.http.prometheus import PrometheusExporter
from mly.http.responses import JSONResponse, exception_handlers
from mly.logs.access import AccessLog
from mly.logs.format import current_format
from mly.logs.profiling import debug_routes
from mly.service.registry import ModelRegistry
from mly.service.selftest import SelfTestError, report_startup_failure, run_self_test, self_test_bodies

__all__ = ["create_app"]

log = logging.getLogger("mly.server")


def _rfc3339(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if ts else None


def create_app(registry: ModelRegistry) -> EvalFastPath:
    """The ASGI app: eval on the fast path, everything else on Starlette."""
    config = registry.config

    async def meta_config(request: Request) -> Response:
        started = time.perf_counter_ns()
        service = registry.get(request.path_params["model_id"])
        response = Response(service.current.meta_json, media_type="application/json")
        elapsed_us = (time.perf_counter_ns() - started) // 1000
        service.metrics.cfg_meta.record(elapsed_us)
        service.metrics.meta_handler.record(elapsed_us, "cfg")
        return response

    async def meta_dictionary(request: Request) -> Response:
        started = time.perf_counter_ns()
        service = registry.get(request.path_params["model_id"])
        response = Response(
            service.current.dictionary_gzip,
            media_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )
        elapsed_us = (time.perf_counter_ns() - started) // 1000
        service.metrics.dict_meta.record(elapsed_us)
        service.metrics.meta_handler.record(elapsed_us, "dict")
        return response

    async def meta_stats(request: Request) -> Response:
        service = registry.get(request.path_params["model_id"])
        generation = service.current
        stats: dict[str, Any] = generation.batcher.stats() if generation.batcher is not None else {}
        if generation.memo is not None:
            stats = {**stats, "responseMemo": generation.memo.stats()}
        stats["rows"] = service.outcomes.stats()
        if service.cache is not None:
            stats["cache"] = cache_tier_stats(service.config.datastore, service.cache.counters)
        return JSONResponse(stats)

    async def ready(request: Request) -> Response:
        """For load balancers and orchestrators: 200 once every model serves, 503 before and while stopping."""
        loading = [model_id for model_id, s in registry.services.items() if s.generation is None]
        stopping = request.app.state.stopping
        if loading or stopping:
            reason = "stopping" if stopping else f"loading: {', '.join(loading)}"
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        return JSONResponse({"ready": True})

    async def health(request: Request) -> Response:
        return JSONResponse({model_id: int(s.healthy) for model_id, s in registry.services.items()})

    async def server_config(request: Request) -> Response:
        data = to_json(config)
        for model_json in data["Models"]:
            service = registry.services[model_json["ID"]]
            generation = service.generation
            snapshot = generation.loaded.snapshot if generation else None
            model_json["Modified"] = {
                "Min": _rfc3339(snapshot.min_mtime) if snapshot else None,
                "Max": _rfc3339(snapshot.max_mtime) if snapshot else None,
            }
            model_json["DictMeta"] = {
                "Hash": generation.dict_hash if generation else 0,
                "Reloaded": _rfc3339(service.reloaded_at),
                "Error": service.error,
            }
        return JSONResponse(data)

    prometheus = PrometheusExporter(registry)
    model = "/v1/api/model/{model_id}"
    routes = [
        Route(f"{model}/meta/config", meta_config, methods=["GET"]),
        Route(f"{model}/meta/dictionary", meta_dictionary, methods=["GET"]),
        Route(f"{model}/meta/stats", meta_stats, methods=["GET"]),
        Route("/v1/api/config", server_config, methods=["GET"]),
        Route("/v1/api/config/", server_config, methods=["GET"]),
        Route("/v1/api/health", health, methods=["GET"]),
        Route("/v1/api/ready", ready, methods=["GET"]),
        *metric_routes(registry),
        *prometheus.routes(),
        *debug_routes(mem=config.enable_mem_prof, cpu=config.enable_cpu_prof),  # under the subnet guard
    ]
    middleware = [Middleware(AllowedSubnetMiddleware, prefixes=config.allowed_subnet)]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _self_test(registry, fast_path, app)  # a model that cannot answer stops the start
        watchers = [
            asyncio.create_task(service.watch(), name=f"mly-reload-{service.id}")
            for service in registry.services.values()
            if service.config.reload_interval_sec > 0
        ]
        async with prometheus.running():
            yield
            app.state.stopping = True
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        # Flush write-behind cache writes, then stop the inference pool.
        await registry.aclose()

    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.stopping = False  # /v1/api/ready answers 503 once the lifespan starts shutting down
    access_log = AccessLog(json=current_format() == "json") if config.endpoint.access_log else None
    fast_path = EvalFastPath(
        app, registry, buffer_size=config.endpoint.buffer_size, max_batch_size=config.endpoint.max_batch_size,
        access_log=access_log,
    )
    return fast_path


async def _self_test(registry: ModelRegistry, app: EvalFastPath, starlette: Starlette) -> None:
    """Each model's ``Test`` requests through the whole app, before the first real one."""
    for model_id, service in registry.services.items():
        try:
            bodies = self_test_bodies(service.config, service.current.interface.dtypes)
            if bodies:
                await run_self_test(app, model_id, bodies)  # type: ignore[arg-type]
                log.info("model %s: self-test passed (%d request(s))", model_id, len(bodies))
        except SelfTestError as exc:
            starlette.state.startup_error = str(exc)
            report_startup_failure(str(exc))  # a --workers worker: the supervisor stops every worker
            raise
